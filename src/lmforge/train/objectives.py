"""Training objectives: functions (model, inputs, targets) -> mean loss.

Targets of -100 are ignored (the convention HF and the PyTorch loss share), so
SFT can mask prompts and masked-LM can mask unmasked positions with the same loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_lm_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


OBJECTIVES = {"causal_lm": causal_lm_loss}
