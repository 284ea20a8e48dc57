"""data/data_card.md for a vision-language run: where the images came from, how many went to
each split, the classes, what was skipped, and how each image can be checked against its hash."""

from __future__ import annotations

from collections import Counter

from lmforge.vision.config import ImagesConfig

SPLITS = ("train", "val", "test", "held_out")

_SOURCE_TEXT = {
    "scenes": "synthetic scenes rendered by lmforge with Pillow from the run's seed: one to three shapes of "
              "one colour and size, captioned from the scene's own attributes",
    "digits": "scikit-learn's bundled copy of the UCI handwritten digits (8x8 grey images, 1,797 of them), "
              "captioned \"a handwritten digit <name>\"",
}


def image_data_card(rows: list[dict], cfg: ImagesConfig, skipped: int) -> str:
    """rows: data/images.jsonl's records."""
    by_split = Counter(r["split"] for r in rows)
    source = _SOURCE_TEXT.get(cfg.source, f"the captions file {cfg.source} (open_clip's layout: image file in "
                                          f"'{cfg.image_key}', caption in '{cfg.caption_key}')")
    lines = ["# Data card: images and captions", "",
             f"Source: {source}.", f"Licence: {cfg.licence or 'not stated in the recipe'}.", "",
             "| split | images | distinct captions |", "|---|---|---|"]
    for split in SPLITS:
        if by_split[split]:
            captions = len({r["caption"] for r in rows if r["split"] == split})
            lines.append(f"| {split} | {by_split[split]:,} | {captions:,} |")
    lines.append(f"| all | {len(rows):,} | {len({r['caption'] for r in rows}):,} |")
    lines.append("")
    if skipped:
        lines += [f"{skipped:,} rows were skipped: their image was missing or could not be decoded "
                  f"(data.images.skip_bad = true).", ""]
    if cfg.source == "scenes" and cfg.held_out:
        lines += [f"Held out of training and validation: every scene of {', '.join(cfg.held_out)} "
                  f"(the held_out split), to test compositions the model never saw together.", ""]
    labels = sorted({r["label"] for r in rows if r["label"]})
    if labels:
        present = [s for s in SPLITS if by_split[s]]
        lines += ["## Classes (zero-shot labels)", "", "| class | " + " | ".join(present) + " |",
                  "|---|" + "---|" * len(present)]
        counts = Counter((r["label"], r["split"]) for r in rows)
        for label in labels:
            lines.append(f"| {label} | " + " | ".join(f"{counts[label, s]:,}" for s in present) + " |")
        lines.append("")
    sizes = Counter((r["width"], r["height"]) for r in rows)
    lines += ["## Storage and integrity", "",
              "Every image is stored once as PNG in data/images.bin; data/images.jsonl gives each one's offset, "
              "length and SHA-256 beside its caption, label, split and origin (file and line, or generator and "
              "index), and for a captions file the SHA-256 of the original file. The tokens stage checks every "
              "image against its hash before using it.",
              "", "Stored sizes: " + ", ".join(f"{w}x{h} ({n:,})" for (w, h), n in sizes.most_common(5)) + ".", "",
              "## Examples", ""]
    lines += [f"- {r['caption']} ({r['where']})" for r in [r for r in rows if r["split"] == "train"][:5]]
    lines += ["", "## Known limitations", "",
              "Captions describe only what the source records; a synthetic source has none of the variety, "
              "ambiguity or biases of photographs, so numbers measured on it say nothing about real images."
              if cfg.source == "scenes" else
              "The captions are as the source gives them; lmforge checks that each image decodes, not what it "
              "shows or whether its caption is right.", ""]
    return "\n".join(lines)
