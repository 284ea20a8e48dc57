"""LoRA (Hu et al. 2021): a low-rank update B·A next to chosen linear layers, in PEFT's layout.

    y = W x + (alpha / r) · B A dropout(x)       A: (r, in), B: (out, r), B starts at zero

Only A and B train. Each target `nn.Linear` keeps its own weight under its own name and gains
`lora_A`, `lora_B` and `lora_dropout` children plus a forward hook that adds the update, so
the base model's names, its save/load and its decode kernel are untouched, and the adapter's
names are PEFT's: `base_model.model.<module>.lora_A.weight`. A checkpoint of a LoRA run holds
the adapter only, as PEFT writes it:

    adapter_config.json          PEFT's LoraConfig (r, lora_alpha, target_modules, ...), with
                                 base_model_name_or_path = the base checkpoint
    adapter_model.safetensors    the A and B matrices under PEFT's key names
    model_config.json            the base model's config (what lmforge reads for the arch)

so `PeftModel.from_pretrained(<HF export of the base>, <checkpoint>)` applies it, and
`merge` folds it into full weights (W + (alpha / r) B A) for anything that wants one model.

Target modules follow PEFT's list rule: a name matches a linear layer whose full name equals
it or ends with "." + it ("q_proj" matches every layer's attention query projection).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from lmforge.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


@dataclass
class LoraSpec:
    rank: int
    alpha: float
    dropout: float
    targets: list[str]
    base: str = ""          # the base checkpoint directory

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


def _update(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    x = inputs[0]
    return output + module.lora_B(module.lora_A(module.lora_dropout(x))) * module.lora_scaling


def target_names(model: nn.Module, targets: list[str]) -> list[str]:
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)]


def add_lora(model: nn.Module, spec: LoraSpec) -> list[str]:
    """Attach adapters to the target layers (in place) and freeze everything else; returns the
    targets' names."""
    names = target_names(model, spec.targets)
    if not names:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise UserError(f"train.lora_targets = {spec.targets} matches no linear layer of this model; "
                        f"its linear layers are named: {', '.join(linear)}")
    model.requires_grad_(False)
    modules = dict(model.named_modules())
    for name in names:
        m = modules[name]
        device, dtype = m.weight.device, m.weight.dtype
        m.lora_A = nn.Linear(m.in_features, spec.rank, bias=False, device=device, dtype=dtype)
        m.lora_B = nn.Linear(spec.rank, m.out_features, bias=False, device=device, dtype=dtype)
        nn.init.kaiming_uniform_(m.lora_A.weight, a=math.sqrt(5))   # PEFT's default initialisation
        nn.init.zeros_(m.lora_B.weight)
        m.lora_dropout = nn.Dropout(spec.dropout)
        m.lora_scaling = spec.scaling
        m.register_forward_hook(_update)
    model.lora = spec
    return names


def has_lora(model: nn.Module) -> bool:
    return getattr(model, "lora", None) is not None


def adapter_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter's tensors of a state dict, under PEFT's key names."""
    return {PEFT_PREFIX + k: v for k, v in weights.items() if ".lora_A." in k or ".lora_B." in k}


def peft_config(spec: LoraSpec, task_type: str | None) -> dict:
    return {"peft_type": "LORA", "task_type": task_type, "r": spec.rank, "lora_alpha": spec.alpha,
            "lora_dropout": spec.dropout, "target_modules": sorted(spec.targets), "bias": "none",
            "fan_in_fan_out": False, "base_model_name_or_path": spec.base, "inference_mode": True,
            "init_lora_weights": True, "modules_to_save": None, "use_rslora": False, "use_dora": False,
            "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
            "revision": None}


def save_adapter(weights: dict[str, torch.Tensor], spec: LoraSpec, task_type: str | None, out_dir: Path) -> None:
    sd = {k: v.detach().contiguous().cpu() for k, v in adapter_weights(weights).items()}
    save_file(sd, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps(peft_config(spec, task_type), indent=2))


def is_adapter(ckpt: Path) -> bool:
    return (ckpt / ADAPTER_WEIGHTS).is_file()


def read_adapter(ckpt: Path) -> tuple[LoraSpec, dict[str, torch.Tensor]]:
    """The adapter's spec and its tensors under lmforge's (the base model's) names."""
    try:
        raw = json.loads((ckpt / ADAPTER_CONFIG).read_text())
        sd = load_file(str(ckpt / ADAPTER_WEIGHTS))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the adapter in {ckpt}: {e}") from None
    if raw.get("peft_type") != "LORA" or raw.get("use_dora") or raw.get("rank_pattern") or raw.get("alpha_pattern"):
        raise UserError(f"{ckpt / ADAPTER_CONFIG}: only plain LoRA adapters load (no DoRA, rank or alpha patterns)")
    targets = raw["target_modules"]
    spec = LoraSpec(rank=raw["r"], alpha=raw["lora_alpha"], dropout=raw.get("lora_dropout", 0.0),
                    targets=[targets] if isinstance(targets, str) else list(targets),
                    base=raw.get("base_model_name_or_path") or "")
    return spec, {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v for k, v in sd.items()}


def merged_weights(base: dict[str, torch.Tensor], adapter: dict[str, torch.Tensor], scaling: float) -> dict:
    """Full weights with each adapted W replaced by W + scaling · B A (computed in fp32)."""
    out = dict(base)
    for key in adapter:
        if key.endswith(".lora_A.weight"):
            module = key[:-len(".lora_A.weight")]
            w = base[module + ".weight"]
            delta = adapter[module + ".lora_B.weight"].float() @ adapter[key].float()
            out[module + ".weight"] = (w.float() + scaling * delta).to(w.dtype)
    return out


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its layer's weight and remove it (in place); returns the model."""
    for m in list(model.modules()):
        if isinstance(m, nn.Linear) and hasattr(m, "lora_A"):
            delta = m.lora_B.weight.float() @ m.lora_A.weight.float()
            m.weight.copy_((m.weight.float() + m.lora_scaling * delta).to(m.weight.dtype))
            for hook_id, hook in list(m._forward_hooks.items()):
                if hook is _update:
                    del m._forward_hooks[hook_id]
            del m.lora_A, m.lora_B, m.lora_dropout, m.lora_scaling
    model.lora = None
    return model


def merge_run(path: str | Path, out: str | Path, force: bool = False) -> Path:
    """`lmforge merge`: a LoRA run's (or adapter checkpoint's) model with the adapter folded in,
    written as an ordinary checkpoint directory (weights, config, tokenizer) at `out`."""
    from lmforge.atomic import atomic_dir
    from lmforge.export import refuse_existing
    from lmforge.models.io import find_weights, load_model, save_weights
    from lmforge.tokenizer.load import copy_tokenizer_files, find_tokenizer_dir
    ckpt = find_weights(path)
    if not is_adapter(ckpt):
        raise UserError(f"{ckpt} holds full weights, no adapter: there is nothing to merge")
    out = Path(out)
    refuse_existing(out, force)
    model = merge_lora(load_model(ckpt))
    with atomic_dir(out) as tmp:
        save_weights(model.state_dict(), model.cfg, tmp)
        copy_tokenizer_files(find_tokenizer_dir(Path(path), ckpt), tmp)
    return out
