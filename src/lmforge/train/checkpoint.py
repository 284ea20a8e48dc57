"""Checkpoints: safetensors weights plus the trainer state needed for exact resume.

    checkpoints/step-000500/
      model.safetensors     weights (HF names; a tied head is stored once, as HF does)
      model_config.json     the resolved ModelConfig
      trainer_state.pt      optimizer + scheduler state (tensors only, loaded with weights_only=True)
      state.json            step, tokens seen, data position, RNG states, best val loss
      COMPLETE              written last: a directory without it is an interrupted save

Every checkpoint is written into a temporary directory and renamed into place,
so a kill at any moment leaves only whole checkpoints behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmforge.errors import UserError
from lmforge.models.config import ModelConfig
from lmforge.models.transformer import Transformer

STEP_PREFIX = "step-"


def save_weights(weights: dict[str, torch.Tensor], cfg: ModelConfig, out_dir: Path) -> None:
    """Write model.safetensors + model_config.json into an existing directory."""
    sd = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    if cfg.tie_embeddings:
        sd.pop("lm_head.weight", None)   # stored once, as HF does with tie_word_embeddings
    save_file(sd, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "model_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))


def save_checkpoint(ckpt_root: Path, step: int, weights: dict[str, torch.Tensor], cfg: ModelConfig,
                    trainer_state: dict | None, state: dict, name: str | None = None) -> Path:
    """Save atomically as ckpt_root/step-N (or ckpt_root/name); returns the final path."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / (name or f"{STEP_PREFIX}{step:06d}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=ckpt_root))
    try:
        save_weights(weights, cfg, tmp)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer_state.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        (tmp / "COMPLETE").write_text("ok\n")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def list_steps(ckpt_root: Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    if not ckpt_root.is_dir():
        return []
    steps = [p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)]
    return sorted(steps, key=lambda p: p.name)


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
        load_file(str(ckpt / "model.safetensors"))
        json.loads((ckpt / "state.json").read_text())
        json.loads((ckpt / "model_config.json").read_text())
        if (ckpt / "trainer_state.pt").exists():
            torch.load(ckpt / "trainer_state.pt", weights_only=True, map_location="cpu")
    except (OSError, SafetensorError, json.JSONDecodeError, RuntimeError, EOFError, ValueError) as e:
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    return None


def read_model_config(ckpt: Path) -> ModelConfig:
    raw = json.loads((ckpt / "model_config.json").read_text())
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in raw.items() if k in names})


def find_weights(path: str | Path) -> Path:
    """Resolve a run directory or checkpoint directory to the checkpoint to load.

    For a run directory: checkpoints/best if present, else the newest step."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    root = path / "checkpoints"
    if not path.exists():
        raise UserError(f"not found: {path}")
    if (root / "best" / "model.safetensors").is_file():
        return root / "best"
    steps = [s for s in list_steps(root) if (s / "COMPLETE").exists()]
    if steps:
        return steps[-1]
    raise UserError(f"{path} has no trained model (no checkpoints/); run `lmforge train {path}` first")


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> Transformer:
    """Load a Transformer from a run directory or a checkpoint directory, in eval mode."""
    ckpt = find_weights(path)
    cfg = read_model_config(ckpt)
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device=device)
    try:
        sd = load_file(str(ckpt / "model.safetensors"), device=str(device))
    except (SafetensorError, OSError) as e:
        raise UserError(f"cannot read weights {ckpt / 'model.safetensors'}: {e}") from None
    if cfg.tie_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    if model.rotary is not None:   # buffers are not in the state dict: rebuild them on the device
        model.rotary = type(model.rotary)(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta).to(device)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()
