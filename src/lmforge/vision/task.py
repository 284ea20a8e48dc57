"""The stages of a vision-language run (train.objective = "contrastive", the `clip` family).

    data       data.images.source -> data/images.bin (PNG bytes), data/images.jsonl (caption, label,
               split, SHA-256, provenance per image), data/documents.jsonl (training captions, for
               the tokenizer stage, which trains on them as on any documents), data/data_card.md
    tokens     images decoded (hashes checked) and resized to model.image_size -> tokens/pixels.npy;
               captions tokenized -> tokens/pairs.json
    train      the Contrastive objective; at each validation, zero-shot accuracy and recall on the
               validation and held-out splits go to metrics.jsonl (open_clip's advice: watch
               zero-shot accuracy, not the validation loss)
    evaluate   the same on the test and held-out splits, with chance levels, and the retrieval
               picture -> eval/clip.json, eval/clip_retrieval.png

Splits: train / val / test by data.images.split; for scenes, every scene of a held-out
colour-shape pair goes to "held_out" and is never trained on or validated with.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.finetune import Task
from lmforge.recipe import Recipe
from lmforge.rundir import RunDir
from lmforge.stages import say
from lmforge.tokenizer.load import load_tokenizer
from lmforge.vision import images, metrics
from lmforge.vision.datacard import image_data_card
from lmforge.vision.sources import default_templates, read_pairs

SPLITS = ("train", "val", "test", "held_out")


def assign_splits(pairs, cfg, seed: int) -> list[str]:
    held = set(cfg.held_out) if cfg.source == "scenes" else set()
    rest = [i for i, p in enumerate(pairs) if p.label not in held]
    random.Random(seed).shuffle(rest)
    n_train, n_val = int(len(rest) * cfg.split[0]), int(len(rest) * cfg.split[1])
    names = ["held_out"] * len(pairs)
    for j, i in enumerate(rest):
        names[i] = "train" if j < n_train else "val" if j < n_train + n_val else "test"
    return names


def _read_rows(run: RunDir) -> list[dict]:
    path = run.data / "images.jsonl"
    if not path.is_file():
        raise UserError(f"{run.path}: no images (data/images.jsonl); run `lmforge prepare {run.path}`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class ImageText(Task):
    result = "clip"
    needs_base = False

    def data(self, run: RunDir, recipe: Recipe) -> None:
        t0 = time.time()
        cfg = recipe.data.images
        pairs, skipped = read_pairs(cfg, recipe.seed)
        pairs = pairs[:cfg.max_images] if cfg.max_images else pairs
        splits = assign_splits(pairs, cfg, recipe.seed)
        for name in ("train", "val", "test"):
            if name not in splits:
                raise UserError(f"data.images: the {name} split is empty ({len(pairs)} images); add images or "
                                f"change data.images.split")
        blob, rows = bytearray(), []
        for i, (pair, split) in enumerate(zip(pairs, splits)):
            png = images.png_bytes(pair.image)
            rows.append({"id": i, "split": split, "caption": pair.caption, "label": pair.label,
                         "attributes": pair.attributes, "where": pair.where, "offset": len(blob), "length": len(png),
                         "sha256": images.sha256(png), "source_sha256": pair.source_sha256 or None,
                         "width": pair.image.width, "height": pair.image.height})
            blob += png
        out = [run.data / "images.bin", run.data / "images.jsonl", run.data / "documents.jsonl", run.data_card]
        atomic.write_bytes(out[0], bytes(blob))
        atomic.write_text(out[1], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        atomic.write_text(out[2], "".join(json.dumps({"text": r["caption"], "source": r["where"]}, ensure_ascii=False)
                                          + "\n" for r in rows if r["split"] == "train"))
        atomic.write_text(out[3], image_data_card(rows, cfg, skipped))
        counts = {f"{name}_images": splits.count(name) for name in SPLITS}
        run.record_stage("data", time.time() - t0, outputs=out, images=len(rows), skipped_images=skipped,
                         source=cfg.source, documents=counts["train_images"], **counts)
        say("data: " + ", ".join(f"{n:,} {k[:-7]}" for k, n in counts.items() if n) + " images"
            + (f" ({skipped} unreadable skipped)" if skipped else "") + f", {len(blob) / 1e6:.1f} MB")

    def tokens(self, run: RunDir, recipe: Recipe) -> None:
        t0 = time.time()
        rows = _read_rows(run)
        blob = (run.data / "images.bin").read_bytes()
        size = recipe.model.resolved().image_size
        pixels = np.empty((len(rows), size, size, 3), dtype=np.uint8)
        for r in rows:
            data = blob[r["offset"]:r["offset"] + r["length"]]
            if images.sha256(data) != r["sha256"]:
                raise UserError(f"{run.data / 'images.bin'}: image {r['id']} ({r['where']}) does not match its hash "
                                f"in images.jsonl; rerun `lmforge prepare {run.path} --force`")
            pixels[r["id"]] = images.resized(images.decode(data), size)
        captions = sorted({r["caption"] for r in rows})
        ids = dict(zip(captions, metrics.Captions(load_tokenizer(run.tokenizer)).ids(captions)))
        group = {c: i for i, c in enumerate(captions)}
        pairs = {name: [] for name in SPLITS}
        for r in rows:
            pairs[r["split"]].append([ids[r["caption"]], r["id"], group[r["caption"]]])
        with atomic.atomic_path(run.tokens / "pixels.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, pixels)
        path = run.tokens / "pairs.json"
        atomic.write_json(path, {"image_size": size, "captions": captions, "pairs": pairs}, indent=None)
        longest = max(len(x) for x in ids.values())
        run.record_stage("tokens", time.time() - t0, inputs=[run.tokenizer_json, run.data / "images.jsonl"],
                         outputs=[run.tokens / "pixels.npy", path], image_size=size, captions=len(captions),
                         longest_caption_tokens=longest)
        say(f"tokens: {len(rows):,} images at {size}x{size}, {len(captions):,} distinct captions "
            f"(longest {longest} tokens)")

    def examples(self, run: RunDir) -> dict:
        path = run.tokens / "pairs.json"
        if not path.is_file():
            raise UserError(f"{run.path}: no tokenized pairs (tokens/pairs.json); run `lmforge prepare {run.path}`")
        raw = json.loads(path.read_text())
        out = {name: [(ids, row, group) for ids, row, group in raw["pairs"][name]] for name in SPLITS}
        return {**out, "pixels": np.load(run.tokens / "pixels.npy"), "captions": raw["captions"],
                "image_size": raw["image_size"], "rows": _read_rows(run)}

    def before_training(self, run: RunDir, recipe: Recipe, model, examples: dict, seq_len: int, tokenizer) -> None:
        if examples["image_size"] != model.cfg.image_size:
            raise UserError(f"tokens/pixels.npy holds {examples['image_size']}-pixel images, model.image_size is "
                            f"{model.cfg.image_size}; rerun `lmforge prepare {run.path} --force`")

    def probe(self, run: RunDir, recipe: Recipe, model, examples: dict, log):
        """At each validation: zero-shot accuracy and recall on the validation and held-out splits."""
        captions = metrics.Captions(load_tokenizer(run.tokenizer))

        def measure(step: int) -> None:
            record = {"kind": "clip_eval", "step": step}
            for split in ("val", "held_out"):
                if examples[split]:
                    record.update({f"{split}_{k}": v for k, v in
                                   measure_split(model, recipe, examples, split, captions).items()})
            log(record)
        return measure

    def evaluate(self, run: RunDir, recipe: Recipe, model, window: int) -> dict:
        from lmforge.vision.grid import retrieval_grid
        examples = self.examples(run)
        result = {"source": recipe.data.images.source, "image_size": model.cfg.image_size}
        captions = metrics.Captions(load_tokenizer(run.tokenizer))
        for split in ("test", "held_out"):
            if examples[split]:
                result[split] = measure_split(model, recipe, examples, split, captions)
        grid = retrieval_grid(model, recipe, examples, captions)
        if grid is not None:
            atomic.write_bytes(run.eval_result("clip_retrieval").with_suffix(".png"), grid)
            result["retrieval_picture"] = "eval/clip_retrieval.png"
        for split in ("test", "held_out"):
            m = result.get(split)
            if m and "zero_shot_accuracy" in m:
                say(f"evaluate: {split} zero-shot accuracy {m['zero_shot_accuracy']:.3f} (chance "
                    f"{m['zero_shot_chance']:.3f}), image->text R@1 {m['image_to_text_recall@1']:.3f} (chance "
                    f"{m['image_to_text_chance@1']:.3f}), text->image R@1 {m['text_to_image_recall@1']:.3f} "
                    f"(chance {m['text_to_image_chance@1']:.3f})")
        if "test" in result and "zero_shot_accuracy" in result["test"]:
            result["accuracy"] = result["test"]["zero_shot_accuracy"]
        return result


def classes_of(recipe: Recipe, rows: list[dict]) -> list[str]:
    """The zero-shot classes: every colour-shape pair for scenes (held-out ones included), else the
    labels the rows carry."""
    if recipe.data.images.source == "scenes":
        from lmforge.vision.scenes import compositions
        return compositions()
    return sorted({r["label"] for r in rows if r["label"]})


def measure_split(model, recipe: Recipe, examples: dict, split: str, captions: metrics.Captions) -> dict:
    cfg = recipe.data.images
    chosen = examples[split]
    rows = [examples["rows"][row] for _, row, _ in chosen]
    image_vecs = metrics.image_vectors(model, examples["pixels"][[row for _, row, _ in chosen]])
    local = {}                                   # the split's distinct captions, renumbered
    for _, _, group in chosen:
        local.setdefault(group, len(local))
    text_vecs = metrics.text_vectors(model, captions, [examples["captions"][g] for g in local])
    out = {"images": len(chosen), "captions": len(local),
           **metrics.retrieval(image_vecs, text_vecs, [local[g] for _, _, g in chosen])}
    classes = classes_of(recipe, examples["rows"])
    if classes and all(r["label"] in classes for r in rows):
        templates = cfg.templates or default_templates(cfg.source)
        class_vecs = metrics.class_vectors(model, captions, classes, templates)
        gold = [classes.index(r["label"]) for r in rows]
        accuracy, predicted = metrics.zero_shot(image_vecs, class_vecs, gold)
        out.update(zero_shot_accuracy=round(accuracy, 4), zero_shot_chance=round(1 / len(classes), 4),
                   zero_shot_classes=len(classes))
        if cfg.source == "scenes":     # which half of a pair the mistakes get wrong
            from lmforge.vision.scenes import COLOURS, SHAPES
            for i, (part, values) in enumerate((("colour", COLOURS), ("shape", SHAPES))):
                hits = [classes[p].split(" ")[i] == r["attributes"][part] for p, r in zip(predicted, rows)]
                out[f"{part}_accuracy"] = round(sum(hits) / len(hits), 4)
                out[f"{part}_chance"] = round(1 / len(values), 4)
    return out
