"""Exports to other tools' formats (hf.py, onnx.py, gguf.py) and import from Hugging Face (hf.py)."""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import UserError


def refuse_existing(out: Path, force: bool) -> None:
    if Path(out).exists() and not force:
        raise UserError(f"{out} exists; choose another --out or pass --force to replace it")


def exportable_checkpoint(run: str | Path) -> Path:
    """The checkpoint an export reads; a classifier is refused (its head has no place in the
    language-model layouts the exports write, and dropping it silently would lose the model)."""
    from lmforge.models.io import find_weights, read_model_config
    ckpt = find_weights(run)
    labels = read_model_config(ckpt).labels
    if labels:
        raise UserError(f"{run} is a classifier (labels {', '.join(labels)}); exporting "
                        f"classifiers is not supported yet — serve it with `lmforge serve` (POST /v1/classify)")
    return ckpt
