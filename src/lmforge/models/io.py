"""The one place model weights are saved and loaded, for every family.

    model.safetensors     weights under the family's names (a tied weight stored once, as HF does)
    model_config.json     the resolved config, with its `arch`: loading builds that family

or, for a LoRA run, the adapter in PEFT's layout next to the base's model_config.json
(adapter_config.json + adapter_model.safetensors, models/lora.py): loading builds the base
named in adapter_config.json and attaches the adapter; `read_weights` gives the merged weights.

A checkpoint written before families existed has no `arch` and loads as `llama`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmforge.errors import UserError
from lmforge.models import lora
from lmforge.models.config import ModelConfig
from lmforge.models.registry import build_model, families, get_family

STEP_PREFIX = "step-"


def config_to_json(cfg: ModelConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2)


def config_from_dict(raw: dict) -> ModelConfig:
    arch = raw.get("arch", "llama")
    table = families()
    if arch not in table:
        raise UserError(f"model_config.json names arch {arch!r}; this lmforge knows {', '.join(sorted(table))}")
    cls = table[arch].config
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in {**raw, "arch": arch}.items() if k in names})


def read_model_config(ckpt: Path) -> ModelConfig:
    return config_from_dict(json.loads((ckpt / "model_config.json").read_text()))


@functools.lru_cache(maxsize=64)
def _tied(cfg_json: str) -> tuple[tuple[str, str], ...]:
    """(duplicate name, stored name) for each weight the model shares between two places."""
    with torch.device("meta"):
        model = build_model(config_from_dict(json.loads(cfg_json)))
    first: dict[int, str] = {}
    pairs = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            pairs.append((name, first[id(p)]))
        else:
            first[id(p)] = name
    return tuple(pairs)


def tied_names(cfg: ModelConfig) -> tuple[tuple[str, str], ...]:
    return _tied(config_to_json(cfg))


def save_weights(weights: dict[str, torch.Tensor], cfg: ModelConfig, out_dir: Path,
                 adapter: "lora.LoraSpec | None" = None) -> None:
    """Write model.safetensors + model_config.json into an existing directory; with `adapter`,
    only the adapter's tensors, in PEFT's layout."""
    if adapter is not None:
        lora.save_adapter(weights, adapter, "CAUSAL_LM" if get_family(cfg.arch).generative else None, out_dir)
        (out_dir / "model_config.json").write_text(config_to_json(cfg))
        return
    sd = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    for duplicate, _ in tied_names(cfg):
        sd.pop(duplicate, None)
    save_file(sd, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "model_config.json").write_text(config_to_json(cfg))


def read_weights(ckpt: Path, cfg: ModelConfig, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The checkpoint's state dict with every tied name filled in (what load_state_dict wants);
    for an adapter checkpoint, the base's weights with the adapter merged in."""
    if lora.is_adapter(ckpt):
        spec, adapter = lora.read_adapter(ckpt)
        return lora.merged_weights(read_weights(find_weights(spec.base), cfg, device), adapter, spec.scaling)
    try:
        sd = load_file(str(ckpt / "model.safetensors"), device=str(device))
    except (SafetensorError, OSError) as e:
        raise UserError(f"cannot read weights {ckpt / 'model.safetensors'}: {e}") from None
    for duplicate, stored in tied_names(cfg):
        sd[duplicate] = sd[stored]
    return sd


def check_arch(ckpt: Path, expected: str) -> None:
    found = read_model_config(ckpt).arch
    if found != expected:
        raise UserError(f"{ckpt} holds a model of arch '{found}', not '{expected}': "
                        f"use a run of the same family or another --out")


def list_steps(ckpt_root: Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    if not ckpt_root.is_dir():
        return []
    steps = [p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)]
    return sorted(steps, key=lambda p: p.name)


def _holds_weights(ckpt: Path) -> bool:
    return (ckpt / "model.safetensors").is_file() or lora.is_adapter(ckpt)


def find_weights(path: str | Path) -> Path:
    """Resolve a run directory or checkpoint directory to the checkpoint to load.

    For a run directory: checkpoints/best if present, else the newest step."""
    path = Path(path)
    if _holds_weights(path):
        return path
    root = path / "checkpoints"
    if not path.exists():
        raise UserError(f"not found: {path}")
    if _holds_weights(root / "best"):
        return root / "best"
    steps = [s for s in list_steps(root) if (s / "COMPLETE").exists()]
    if steps:
        return steps[-1]
    raise UserError(f"{path} has no trained model (no checkpoints/); run `lmforge train {path}` first")


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None, arch: str | None = None) -> torch.nn.Module:
    """Load the model of a run directory or checkpoint directory, in eval mode.

    arch: refuse a checkpoint of any other family (with both names)."""
    ckpt = find_weights(path)
    if arch is not None:
        check_arch(ckpt, arch)
    if lora.is_adapter(ckpt):
        spec, adapter = lora.read_adapter(ckpt)
        model = load_model(spec.base, device)
        lora.add_lora(model, spec)
        load_adapter_weights(model, adapter, ckpt)
        return (model.to(dtype) if dtype is not None else model).eval()
    cfg = read_model_config(ckpt)
    with torch.device(device):
        model = build_model(cfg)   # buffers (RoPE tables) are built here; the weights are overwritten
    model.load_state_dict(read_weights(ckpt, cfg, device), strict=True)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def load_adapter_weights(model: torch.nn.Module, adapter: dict[str, torch.Tensor], ckpt: Path) -> None:
    """Load an adapter's tensors into a model with the same adapters attached; every one must fit."""
    expected = {k for k in model.state_dict() if ".lora_A." in k or ".lora_B." in k}
    if set(adapter) != expected:
        raise UserError(f"the adapter in {ckpt} does not fit the model: "
                        f"{len(set(adapter) - expected)} unexpected and {len(expected - set(adapter))} missing tensors")
    model.load_state_dict(adapter, strict=False)
