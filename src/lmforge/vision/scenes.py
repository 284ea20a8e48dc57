"""Synthetic scenes: one to three shapes of one colour and size, captioned from the scene itself.

    "a small red triangle on the left", "two large blue circles", "three small yellow crosses"

Every attribute is drawn independently, so each colour and each shape is seen in training with
the others; the colour-shape pairs in `held_out` never are (their scenes form a test split of
their own), which tests whether a model learned "red" and "triangle" rather than memorised
"red triangle". Shapes are drawn at four times the size and downsampled, so edges are smooth.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

SIZE = 64                     # stored resolution; the tokens stage resizes to the model's image_size
SUPERSAMPLE = 4
COLOURS = {"red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 119, 220), "yellow": (230, 190, 20),
           "purple": (148, 82, 189)}
SHAPES = ("circle", "square", "triangle", "cross")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
SIZES = {"small": 7, "large": 12}        # radius in stored pixels
COUNTS = {1: "a", 2: "two", 3: "three"}
POSITIONS = {"on the left": (0.25, 0.5), "on the right": (0.75, 0.5), "at the top": (0.5, 0.25),
             "at the bottom": (0.5, 0.75), "in the middle": (0.5, 0.5)}


def compositions() -> list[str]:
    """Every colour-shape pair, "red circle" ...: the zero-shot classes."""
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx + r * math.cos(a), cy + r * math.sin(a))
                      for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)], fill=fill)
    else:
        w = r * 0.38
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)


def _centres(rng: random.Random, count: int, radius: int, position: str | None) -> list[tuple[float, float]]:
    if position is not None:
        fx, fy = POSITIONS[position]
        jitter = SIZE * 0.06
        return [(fx * SIZE + rng.uniform(-jitter, jitter), fy * SIZE + rng.uniform(-jitter, jitter))]
    while True:      # non-overlapping centres anywhere inside the frame
        pts = [(rng.uniform(radius + 1, SIZE - radius - 1), rng.uniform(radius + 1, SIZE - radius - 1))
               for _ in range(count)]
        if all(math.dist(a, b) > 2.2 * radius for i, a in enumerate(pts) for b in pts[i + 1:]):
            return pts


def render_scene(rng: random.Random) -> tuple[Image.Image, str, dict]:
    """(image, caption, attributes) of one random scene."""
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    size, count = rng.choice(list(SIZES)), rng.choice(list(COUNTS))
    position = rng.choice(list(POSITIONS)) if count == 1 else None
    shade = rng.randint(200, 250)
    background = tuple(min(255, shade + rng.randint(-8, 8)) for _ in range(3))
    big = Image.new("RGB", (SIZE * SUPERSAMPLE, SIZE * SUPERSAMPLE), background)
    draw = ImageDraw.Draw(big)
    radius = SIZES[size]
    for cx, cy in _centres(rng, count, radius, position):
        _draw(draw, shape, cx * SUPERSAMPLE, cy * SUPERSAMPLE, radius * SUPERSAMPLE, COLOURS[colour])
    image = big.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    noun = shape if count == 1 else PLURAL[shape]
    caption = f"{COUNTS[count]} {size} {colour} {noun}" + (f" {position}" if position else "")
    return image, caption, {"composition": f"{colour} {shape}", "colour": colour, "shape": shape, "size": size,
                            "count": count, "position": position or ""}


def check_held_out(held_out: list[str]) -> None:
    known = set(compositions())
    for pair in held_out:
        if pair not in known:
            raise ValueError(f"held_out: {pair!r} is not a colour-shape pair of the scenes "
                             f"(colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)})")
