"""Direct preference optimisation (Rafailov et al., 2023): raise the chosen answer's likelihood
over the rejected one's, relative to the starting model.

    loss = -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

log pi(answer) is the sum of the policy's log-probabilities of the answer's tokens (the loss mask
data/conversations.render builds: the assistant content and its <|end|>). The reference
log-probabilities are computed once from the starting model and kept in the run directory
(tokens/dpo_reference.json), so no second model sits in memory while training. Metrics: reward
accuracy (the implicit reward beta * (log pi - log ref) of the chosen answer above the rejected
one's), reward margin, and the policy's chosen and rejected log-probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmforge.train.batches import ItemBatches
from lmforge.train.objectives.base import Objective

Pair = tuple[tuple[list[int], list[bool]], tuple[list[int], list[bool]]]   # (chosen, rejected) renders


def pad_sequences(examples: list[tuple[list[int], list[bool]]], seq_len: int, pad_id: int) -> dict:
    """Right-padded ids (N, T) and labels (-100 outside the answers), T = the longest, at most seq_len."""
    width = min(seq_len, max(len(ids) for ids, _ in examples))
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (tokens, mask) in enumerate(examples):
        tokens, mask = tokens[-width:], mask[-width:]     # an over-long pair keeps its answer (the end)
        ids[i, :len(tokens)] = torch.tensor(tokens)
        for t in range(len(tokens) - 1):
            if mask[t + 1]:
                labels[i, t] = tokens[t + 1]
    return {"input_ids": ids, "labels": labels}


def sequence_logprobs(model, batch: dict) -> torch.Tensor:
    """(N,) the summed log-probability of each sequence's labelled tokens."""
    logits = model(batch["input_ids"]).float()
    labels = batch["labels"]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (logp * (labels != -100)).sum(dim=1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    return loss, {"reward_accuracy": (margin > 0).float().mean(), "reward_margin": margin.mean(),
                  "chosen_logprob": policy_chosen.mean(), "rejected_logprob": policy_rejected.mean()}


@torch.no_grad()
def reference_logprobs(model, pairs: list[Pair], seq_len: int, pad_id: int, batch_size: int = 16) -> list[list[float]]:
    """[[log ref(chosen), log ref(rejected)], ...] of every pair, from `model` as it is now."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        lp = sequence_logprobs(model, pad_sequences([p[0] for p in chunk] + [p[1] for p in chunk], seq_len, pad_id))
        out += [[float(c), float(r)] for c, r in zip(lp[:len(chunk)], lp[len(chunk):])]
    model.train(was_training)
    return out


def pair_batch(pairs: list[Pair], reference: list[list[float]], indices: list[int], seq_len: int,
               pad_id: int) -> dict:
    batch = pad_sequences([pairs[i][0] for i in indices] + [pairs[i][1] for i in indices], seq_len, pad_id)
    batch["reference"] = torch.tensor([reference[i] for i in indices])
    return batch


class DPO(Objective):
    name = "dpo"

    def __init__(self, train: list[Pair], val: list[Pair], train_reference: list[list[float]],
                 val_reference: list[list[float]], pad_id: int, beta: float = 0.1):
        self.train, self.val, self.pad_id, self.beta = train, val, pad_id, beta
        self.train_reference, self.val_reference = train_reference, val_reference

    def train_batches(self, tokens, seq_len: int, batch_size: int, seed: int, grad_accum: int = 1,
                      rank: int = 0, world: int = 1):
        return ItemBatches(len(self.train), lambda chosen: pair_batch(self.train, self.train_reference, chosen,
                                                                      seq_len, self.pad_id),
                           seq_len, batch_size, seed, grad_accum, rank, world)

    def val_batches(self, tokens, seq_len: int, n_windows: int, batch_size: int, seed: int) -> list[dict]:
        return [pair_batch(self.val, self.val_reference, list(range(i, min(i + batch_size, len(self.val)))),
                           seq_len, self.pad_id) for i in range(0, len(self.val), batch_size)]

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        lp = sequence_logprobs(model, batch)
        n = lp.shape[0] // 2
        ref = batch["reference"].to(lp.device)
        return dpo_loss(lp[:n], lp[n:], ref[:, 0], ref[:, 1], self.beta)
