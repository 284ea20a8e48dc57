"""Checkpoints: safetensors weights plus the trainer state needed for exact resume.

    checkpoints/step-000500/
      model.safetensors     weights (the family's names; a tied weight stored once, as HF does),
                            or a LoRA run's adapter_config.json + adapter_model.safetensors
      model_config.json     the resolved model config, with its arch
      trainer_state.pt      optimizer, RNG and objective state (tensors only, loaded with weights_only=True)
      state.json            step, tokens seen, elapsed time, best val loss
      COMPLETE              written last: a directory without it is an interrupted save

Every checkpoint is written into a temporary directory and renamed into place,
so a kill at any moment leaves only whole checkpoints behind. Weights go through
models/io.py, the one module that saves and loads them.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from lmforge.atomic import atomic_dir
from lmforge.models.config import ModelConfig
from lmforge.models.io import STEP_PREFIX, list_steps, save_weights
from lmforge.models.lora import ADAPTER_WEIGHTS

def save_checkpoint(ckpt_root: Path, step: int, weights: dict[str, torch.Tensor], cfg: ModelConfig,
                    trainer_state: dict | None, state: dict, name: str | None = None, adapter=None) -> Path:
    """Save atomically as ckpt_root/step-N (or ckpt_root/name); returns the final path.
    adapter: a LoRA run's spec; the checkpoint then holds the adapter only (PEFT's layout)."""
    final = ckpt_root / (name or f"{STEP_PREFIX}{step:06d}")
    with atomic_dir(final) as tmp:
        save_weights(weights, cfg, tmp, adapter=adapter)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer_state.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        (tmp / "COMPLETE").write_text("ok\n")
    return final


def rotate(ckpt_root: Path, keep_last: int) -> None:
    for old in list_steps(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".*"):   # leftovers of interrupted saves
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def verify(ckpt: Path) -> str | None:
    """Return None if the checkpoint is whole and readable, else the reason it is not."""
    if not (ckpt / "COMPLETE").exists():
        return "incomplete (no COMPLETE marker)"
    try:
        load_file(str(ckpt / (ADAPTER_WEIGHTS if (ckpt / ADAPTER_WEIGHTS).exists() else "model.safetensors")))
        json.loads((ckpt / "state.json").read_text())
        json.loads((ckpt / "model_config.json").read_text())
        if (ckpt / "trainer_state.pt").exists():
            torch.load(ckpt / "trainer_state.pt", weights_only=True, map_location="cpu")
    except (OSError, SafetensorError, json.JSONDecodeError, pickle.UnpicklingError, RuntimeError, EOFError,
            ValueError) as e:
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    return None
