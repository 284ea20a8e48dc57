"""Model families: each one a small spec, looked up by the recipe's `model.arch`.

A `Family` says everything the rest of lmforge needs to know about an architecture,
so no module outside models/ asks for a family by name:

  config        its `[model]` dataclass (a `ModelConfig` with the family's fields and presets)
  build         config -> nn.Module (weights initialised)
  objectives    the training objectives it can learn; the first is its default
  generative    whether it generates text (engine, chat, serve)
  recurrent     whether it carries a hidden state from one window to the next in training
  param_roles   model -> {parameter name: role}; the optimizers split by role, not by name
  fsdp_units    model -> the submodules FSDP shards one by one (the root is sharded last)
  decoder       model -> the engine's decode kernel (fast where the family has one)
  blocks        model -> its layers in order (fine-tuning trains "the last N blocks")
  features      (model, input_ids, attention_mask) -> one vector per sequence, what a classifier
                head reads: the last real token's state (causal), the mean over real tokens (bert),
                the caption's projected vector in the shared image-text space (clip)
  describe      config -> one line for the model card
  to_hf         (config, weights) -> (HF config.json, HF state dict) of the standard architecture
                that computes the same function; None: the family has none
  from_hf       {HF model_type: (config.json, HF state dict) -> (config, weights)} it can import

Parameter roles: "matrix" (hidden 2-D weights: Muon's, and AdamW's weight decay),
"embedding", "head", "vector" (norm weights and biases), "table" (hashed n-gram
tables, with their own weight decay) and "adapter" (LoRA's matrices, AdamW's). A
classifier head (models/classifier.py) is a "head" and LoRA's matrices are "adapter"s
in every family, so those two rules live here rather than in each family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from lmforge.models.config import ModelConfig

ROLES = ("matrix", "embedding", "head", "vector", "table", "adapter")


@dataclass(frozen=True)
class Family:
    arch: str
    config: type[ModelConfig]
    build: Callable[[ModelConfig], nn.Module]
    objectives: tuple[str, ...]
    generative: bool
    recurrent: bool
    param_roles: Callable[[nn.Module], dict[str, str]]
    fsdp_units: Callable[[nn.Module], list[nn.Module]]
    decoder: Callable[[nn.Module], object] | None
    describe: Callable[[ModelConfig], str]
    blocks: Callable[[nn.Module], list[nn.Module]]
    features: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    to_hf: Callable[[ModelConfig, dict], tuple[dict, dict]] | None = None
    from_hf: dict[str, Callable[[dict, dict], tuple[ModelConfig, dict]]] = field(default_factory=dict)

    @property
    def default_objective(self) -> str:
        return self.objectives[0]


def families() -> dict[str, Family]:
    from lmforge.models import bert, clip, llama, rnn
    return {f.arch: f for f in (llama.FAMILY, bert.FAMILY, clip.FAMILY, *rnn.FAMILIES)}


def get_family(arch: str) -> Family:
    table = families()
    if arch not in table:
        raise ValueError(f"arch: got {arch!r}, allowed: {', '.join(sorted(table))}")
    return table[arch]


def family_of(model_or_config) -> Family:
    cfg = getattr(model_or_config, "cfg", model_or_config)
    return get_family(cfg.arch)


def family_of_preset(preset: str) -> str | None:
    for arch, fam in families().items():
        if preset in fam.config.PRESETS:
            return arch
    return None


def hf_importer(model_type: str) -> Callable[[dict, dict], tuple[ModelConfig, dict]]:
    """The converter for a Hugging Face `model_type`, from whichever family imports it."""
    table = {kind: fn for fam in families().values() for kind, fn in fam.from_hf.items()}
    if model_type not in table:
        raise KeyError(model_type)
    return table[model_type]


def hf_importable() -> list[str]:
    return sorted({kind for fam in families().values() for kind in fam.from_hf})


HEAD_PREFIX = "score."   # the classifier head's parameters (HF's name for it in causal models)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The family's model; with `cfg.labels`, a classifier head on top (models/classifier.py)."""
    model = get_family(cfg.arch).build(cfg)
    if cfg.labels:
        from lmforge.models.classifier import add_head
        add_head(model, cfg.labels)
    return model


def roles_by_name(model: nn.Module, rules: Callable[[str, nn.Parameter], str]) -> dict[str, str]:
    """{name: role} for every parameter, a tied weight listed once under its first name."""
    seen: set[int] = set()
    roles = {}
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if name.startswith(HEAD_PREFIX):
            role = "head"
        elif ".lora_A." in name or ".lora_B." in name:
            role = "adapter"
        else:
            role = rules(name, p)
        assert role in ROLES, role
        roles[name] = role
    return roles
