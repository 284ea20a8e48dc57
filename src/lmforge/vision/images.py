"""Images as the run stores and the model reads them.

data/images.bin holds every image as PNG bytes, end to end (one file, written once, atomically);
data/images.jsonl gives each one's offset, length and SHA-256 beside its caption and provenance.
The tokens stage decodes them, resizes to the model's `image_size` and keeps the uint8 pixels;
`to_pixels` turns those into the float tensor the ViT reads, scaled to [-1, 1].
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


class BadImage(ValueError):
    """Bytes that are not a decodable image (the message says why)."""


def decode(data: bytes) -> Image.Image:
    """RGB image of encoded bytes (PNG, JPEG, ... whatever Pillow reads); BadImage otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImage(str(e).splitlines()[0][:200] if str(e) else type(e).__name__) from None


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resized(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the image squashed to a square (captions may speak of left and right,
    so nothing is cropped or flipped)."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0
