"""eval/clip.json as the tables the model card and report.html show, chance beside every number."""

from __future__ import annotations

SPLIT_NAMES = {"test": "test (pairs seen in training)", "held_out": "held-out compositions (never trained on)"}


def _with_chance(m: dict, value: str, chance: str) -> str:
    return f"{m[value]:.3f} (chance {m[chance]:.3f})" if value in m else "-"


def clip_tables(result: dict) -> list[tuple[str, list[str], list[list]]]:
    """[(title, header, rows)] of the zero-shot and the retrieval measurements."""
    splits = [(SPLIT_NAMES[s], result[s]) for s in ("test", "held_out") if s in result]
    tables = []
    if any("zero_shot_accuracy" in m for _, m in splits):
        tables.append(("Zero-shot classification", ["split", "images", "classes", "accuracy", "colour right",
                                                    "shape right"],
                       [[name, m["images"], m.get("zero_shot_classes", "-"),
                         _with_chance(m, "zero_shot_accuracy", "zero_shot_chance"),
                         _with_chance(m, "colour_accuracy", "colour_chance"),
                         _with_chance(m, "shape_accuracy", "shape_chance")] for name, m in splits]))
    tables.append(("Retrieval (recall@k among the split's images and distinct captions)",
                   ["split", "images", "captions", "image->text R@1", "image->text R@5", "text->image R@1",
                    "text->image R@5"],
                   [[name, m["images"], m["captions"],
                     *(_with_chance(m, f"{d}_recall@{k}", f"{d}_chance@{k}")
                       for d in ("image_to_text", "text_to_image") for k in (1, 5))] for name, m in splits]))
    return tables


def markdown_tables(result: dict) -> list[str]:
    lines = []
    for title, header, rows in clip_tables(result):
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                  *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]
    return lines
