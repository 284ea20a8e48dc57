"""Exports to other tools' formats (hf.py, onnx.py, gguf.py) and import from Hugging Face (hf.py)."""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import UserError


def refuse_existing(out: Path, force: bool) -> None:
    if Path(out).exists() and not force:
        raise UserError(f"{out} exists; choose another --out or pass --force to replace it")
