"""The retrieval picture in report.html: for each of a few class prompts, the test images the
model ranks nearest, framed green where the image is of that class and red where it is not.
Held-out classes come first: they show whether the model composes concepts it never saw paired."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from lmforge.vision import metrics

CELL, LABEL_WIDTH, SHOWN, QUERIES = 64, 190, 6, 8


def retrieval_grid(model, recipe, examples: dict, captions: metrics.Captions) -> bytes | None:
    """PNG bytes of the grid, or None when the images carry no classes."""
    from lmforge.vision.images import png_bytes
    from lmforge.vision.sources import default_templates
    from lmforge.vision.task import classes_of
    pool = examples["test"] + examples["held_out"]
    rows = [examples["rows"][row] for _, row, _ in pool]
    classes = classes_of(recipe, examples["rows"])
    if not classes or not pool:
        return None
    held = [c for c in recipe.data.images.held_out if c in classes] if recipe.data.images.source == "scenes" else []
    queries = (held + [c for c in classes if c not in held])[:QUERIES]
    cfg = recipe.data.images
    vectors = metrics.class_vectors(model, captions, queries, cfg.templates or default_templates(cfg.source))
    pixels = examples["pixels"][[row for _, row, _ in pool]]
    nearest = (vectors @ metrics.image_vectors(model, pixels).T).topk(min(SHOWN, len(pool)), dim=1).indices
    canvas = Image.new("RGB", (LABEL_WIDTH + SHOWN * (CELL + 4), len(queries) * (CELL + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    for q, (query, found) in enumerate(zip(queries, nearest.tolist())):
        y = q * (CELL + 4)
        draw.text((4, y + CELL // 2 - 6), query + (" (held out)" if query in held else ""), fill="black")
        for j, i in enumerate(found):
            x = LABEL_WIDTH + j * (CELL + 4)
            draw.rectangle([x, y, x + CELL + 3, y + CELL + 3], fill="#2ca02c" if rows[i]["label"] == query else "#d62728")
            canvas.paste(Image.fromarray(np.asarray(pixels[i])).resize((CELL, CELL), Image.Resampling.NEAREST),
                         (x + 2, y + 2))
    return png_bytes(canvas)



