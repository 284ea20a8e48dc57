"""Where a vision-language run's images come from (`data.images.source`).

Each source yields `Pair`s: the image, its caption, a class label (for zero-shot accuracy; ""
when the source has none), the attributes that made it (scenes) and where it came from.

    scenes            vision/scenes.py, rendered from the recipe's seed
    digits            scikit-learn's bundled 8x8 handwritten digits (1,797, UCI's set),
                      captioned "a handwritten digit seven"
    FILE.csv/.jsonl   open_clip's layout: one row per image, its file (relative to FILE's folder)
                      in `image_key` and its caption in `caption_key`
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lmforge.errors import UserError
from lmforge.jsonl import numbered_rows
from lmforge.vision import images, scenes
from lmforge.vision.config import ImagesConfig

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass
class Pair:
    image: Image.Image
    caption: str
    label: str
    where: str                       # the file and line (or generator and index) it came from
    source_sha256: str = ""          # of the original file's bytes, for a captions file's images
    attributes: dict = field(default_factory=dict)


def default_templates(source: str) -> list[str]:
    if source == "scenes":
        return ["a {}", "a small {}", "a large {}"]
    if source == "digits":
        return ["a handwritten digit {}"]
    return ["{}"]


def read_pairs(cfg: ImagesConfig, seed: int) -> tuple[list[Pair], int]:
    """(pairs, images skipped as missing or undecodable)."""
    if not cfg.source:
        raise UserError("train.objective = 'contrastive' needs data.images.source: \"scenes\", \"digits\" or a "
                        ".csv/.jsonl captions file naming images")
    if cfg.source == "scenes":
        return _scenes(cfg, seed), 0
    if cfg.source == "digits":
        return _digits(), 0
    return _captions_file(cfg)


def _scenes(cfg: ImagesConfig, seed: int) -> list[Pair]:
    try:
        scenes.check_held_out(cfg.held_out)
    except ValueError as e:
        raise UserError(f"data.images.{e}") from None
    rng = random.Random(seed)
    pairs = []
    for i in range(cfg.scenes):
        image, caption, attributes = scenes.render_scene(rng)
        pairs.append(Pair(image, caption, attributes["composition"], f"scenes#{i}", attributes=attributes))
    return pairs


def _digits() -> list[Pair]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    pairs = []
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        ink = (255 - pixels * (255 / 16)).clip(0, 255).astype(np.uint8)      # dark ink on white
        image = Image.fromarray(ink, mode="L").convert("RGB")
        name = DIGITS[int(target)]
        pairs.append(Pair(image, f"a handwritten digit {name}", name, f"digits#{i}"))
    return pairs


def _rows(path: Path) -> list[tuple[int, dict]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = list(numbered_rows(text.splitlines(), path))
        for n, row in rows:
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: expected a JSON object per line")
        return rows
    if path.suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix == ".tsv" else ",")
        return [(n, row) for n, row in enumerate(reader, 2)]
    raise UserError(f"data.images.source: {path} is neither \"scenes\", \"digits\" nor a .csv/.tsv/.jsonl file")


def _captions_file(cfg: ImagesConfig) -> tuple[list[Pair], int]:
    path = Path(cfg.source)
    if not path.is_file():
        raise UserError(f"data.images.source: {path}: no such file")
    pairs, skipped = [], 0
    for n, row in _rows(path):
        where = f"{path}:{n}"
        needed = {"image_key": cfg.image_key, "caption_key": cfg.caption_key, "label_key": cfg.label_key}
        for setting, key in needed.items():
            if key and not str(row.get(key) or "").strip():
                raise UserError(f"{where}: no '{key}' field (data.images.{setting})")
        file = (path.parent / str(row[cfg.image_key])).resolve()
        try:
            data = file.read_bytes()
            image = images.decode(data)
        except (OSError, images.BadImage) as e:
            reason = "no such image file" if isinstance(e, FileNotFoundError) else \
                f"cannot read the image ({e.strerror if isinstance(e, OSError) else e})"
            if cfg.skip_bad:
                skipped += 1
                continue
            raise UserError(f"{where}: {row[cfg.image_key]}: {reason} (data.images.skip_bad = true skips such rows)") \
                from None
        pairs.append(Pair(image, str(row[cfg.caption_key]).strip(), str(row.get(cfg.label_key, "") or "").strip(),
                          where, source_sha256=images.sha256(data)))
    if not pairs:
        raise UserError(f"{path}: no usable image-caption rows")
    return pairs, skipped
