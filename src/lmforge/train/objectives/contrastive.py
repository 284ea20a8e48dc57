"""Contrastive image-text training (CLIP): the symmetric InfoNCE loss over a batch of pairs.

Each example is (caption token ids, image row, caption group). A batch holds the images as
pixels (vision/images.py) and the captions right-padded with an attention mask. The model gives
unit vectors for both and a temperature; logits = scale * images @ texts.T, and the loss is the
mean of the cross-entropies image->text (rows) and text->image (columns). Pairs whose captions
are the same text (two scenes both "a small red circle") are both right answers: the target
spreads evenly over them, so a batch never teaches that a caption is wrong for its twin. With
distinct captions this is exactly CLIP's loss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.train.batches import ItemBatches
from lmforge.train.objectives.base import ExampleObjective
from lmforge.train.objectives.classify import label_batch
from lmforge.vision.images import to_pixels

Example = tuple[list[int], int, int]     # (caption ids, image row, caption group)


def info_nce(images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor,
             groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) of unit vectors images (B, d) and texts (B, d); groups (B,): equal ids mark
    pairs with the same caption (None: every caption distinct, the target is the diagonal)."""
    logits = scale * images @ texts.T
    if groups is None:
        targets = torch.eye(len(images), device=images.device)
    else:
        targets = (groups[:, None] == groups[None, :]).float()
    targets = targets / targets.sum(dim=1, keepdim=True)
    loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2
    return loss, logits


def pair_batch(examples: list[Example], indices: list[int], pixels: np.ndarray, seq_len: int, pad_id: int) -> dict:
    chosen = [examples[i] for i in indices]
    batch = label_batch([(ids, 0) for ids, _, _ in chosen], list(range(len(chosen))), seq_len, pad_id)
    del batch["label"]
    batch["pixels"] = to_pixels(pixels[[row for _, row, _ in chosen]])
    batch["group"] = torch.tensor([group for _, _, group in chosen])
    return batch


class Contrastive(ExampleObjective):
    name = "contrastive"

    def __init__(self, train: list[Example], val: list[Example], pixels: np.ndarray, pad_id: int, seq_len: int):
        super().__init__(train, val, pad_id, seq_len)
        self.pixels = pixels

    def train_batches(self, tokens, seq_len: int, batch_size: int, seed: int, grad_accum: int = 1,
                      rank: int = 0, world: int = 1):
        return ItemBatches(len(self.train), lambda chosen: pair_batch(self.train, chosen, self.pixels, seq_len,
                                                                      self.pad_id),
                           seq_len, batch_size, seed, grad_accum, rank, world)

    def val_batches(self, tokens, seq_len: int, n_windows: int, batch_size: int, seed: int) -> list[dict]:
        """The first `n_windows` validation pairs in a seeded order, in batches of the training size
        (InfoNCE depends on how many negatives a batch holds)."""
        order = torch.randperm(len(self.val), generator=torch.Generator().manual_seed(seed)).tolist()
        order = order[:n_windows] if n_windows else order
        return [pair_batch(self.val, order[i:i + batch_size], self.pixels, seq_len, self.pad_id)
                for i in range(0, len(order), batch_size)]

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        images, texts, scale = model(batch["pixels"], batch["input_ids"], batch["attention_mask"])
        loss, logits = info_nce(images, texts, scale, batch["group"])
        hit = batch["group"][logits.argmax(dim=1)] == batch["group"]       # the top caption is the image's own
        return loss, {"batch_accuracy": hit.float().mean(), "logit_scale": scale.detach()}
