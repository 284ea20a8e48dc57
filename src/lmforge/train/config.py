"""The `[train]` section of a recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TrainConfig:
    objective: Literal["", "causal_lm", "masked_lm", "sft", "dpo", "classify", "contrastive"] = ""   # "" = the family's own (recipe.py fills it in)
    adapter: Literal["", "lora"] = ""   # "lora": train low-rank adapters only (models/lora.py), saved in PEFT's layout
    lora_rank: int = 8
    lora_alpha: float = 16.0         # the update is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj", "query", "value"])  # PEFT's rule
    train_layers: int = -1           # classify: -1 all parameters, 0 the head only, N the head and the last N blocks
    dpo_beta: float = 0.1            # dpo: strength of the preference against the reference model
    mlm_probability: float = 0.15    # masked_lm: share of ordinary tokens selected for prediction
    whole_word_masking: bool = False # masked_lm: select whole words (all their tokens) instead of tokens
    batch_size: int = 16             # sequences per micro-batch (per rank)
    seq_len: int = 0                 # 0 = model.max_seq_len
    grad_accum: int = 1
    max_steps: int = 1000
    time_budget_s: float = 0.0       # > 0: train for this many wall seconds; the schedule follows the clock
    optimizer: Literal["adamw", "muon"] = "adamw"
    lr: float = 1e-3                 # AdamW lr (embeddings, head, norms and, with adamw, everything)
    muon_lr: float = 0.02            # Muon lr for 2-D hidden matrices
    min_lr_ratio: float = 0.1        # final lr as a fraction of lr
    weight_decay: float = 0.1
    ngram_weight_decay: float = 1.0  # AdamW decay of the n-gram embedding (table and projection)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0           # 0 = off
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = 50
    decay_fraction: float = 0.2      # wsd: last fraction of training spent decaying
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"   # autocast for matmuls; auto = measured faster
    compile: bool | Literal["auto"] = "auto"   # torch.compile the step; auto = where it measures faster
    threads: int = 0                 # 0 = torch default (all cores)
    eval_every: int = 100            # steps between validations (0 = only at the end)
    eval_batches: int = 20
    log_every: int = 10
    checkpoint_every: int = 200      # 0 = only at the end
    keep_last: int = 2
    checkpoint_failure: Literal["stop", "continue"] = "stop"   # a checkpoint that cannot be written (disk full)
    keep_best: bool = True
    patience: int = 0                # > 0: stop after this many validations without improvement
    distributed: Literal["ddp", "fsdp"] = "ddp"   # strategy when launched under torchrun

    def validate(self) -> None:
        for name in ("batch_size", "grad_accum", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: got {getattr(self, name)}, must be >= 1")
        if self.max_steps < 1 and self.time_budget_s <= 0:
            raise ValueError("max_steps must be >= 1 (or set time_budget_s)")
        if self.lr <= 0 or self.muon_lr <= 0:
            raise ValueError(f"lr: got {self.lr}, must be > 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio: got {self.min_lr_ratio}, allowed: 0..1")
        if self.lora_rank < 1 or self.lora_alpha <= 0 or not 0.0 <= self.lora_dropout < 1.0 or not self.lora_targets:
            raise ValueError(f"lora: need lora_rank >= 1, lora_alpha > 0, 0 <= lora_dropout < 1 and at least one "
                             f"name in lora_targets (got {self.lora_rank}, {self.lora_alpha}, {self.lora_dropout}, "
                             f"{self.lora_targets})")
        if self.train_layers < -1:
            raise ValueError(f"train_layers: got {self.train_layers}, allowed: -1 (all), 0 (head only), N >= 1")
        if self.dpo_beta <= 0:
            raise ValueError(f"dpo_beta: got {self.dpo_beta}, must be > 0")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability: got {self.mlm_probability}, allowed: 0 < p < 1")
        for name in ("weight_decay", "ngram_weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: got {getattr(self, name)}, must be >= 0")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction: got {self.decay_fraction}, allowed: (0, 1]")
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "patience", "threads", "seq_len"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: got {getattr(self, name)}, must be >= 0")
