"""What a CLIP-style model is measured by, each number beside its chance level.

    zero-shot accuracy   each class name put into the prompt templates, the templates' unit vectors
                         averaged (CLIP's prompt ensembling); an image's class is the nearest one
    image->text recall@k the image's own caption among the k nearest of the split's distinct captions
    text->image recall@k an image of the caption among the k nearest images

Captions repeat (many scenes are "a small red circle on the left"), so retrieval counts a
caption's every image as right: chance for text->image with m right images among N is
1 - C(N-m, k) / C(N, k), averaged over the captions; for image->text it is k / (distinct captions).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.tokenizer.load import special_ids
from lmforge.train.objectives.classify import label_batch
from lmforge.vision.images import to_pixels

KS = (1, 5)
BATCH = 128


@torch.no_grad()
def image_vectors(model, pixels: np.ndarray) -> torch.Tensor:
    """(N, embed_dim) unit vectors of (N, S, S, 3) uint8 images."""
    was_training = model.training
    model.eval()
    out = [F.normalize(model.image_features(to_pixels(pixels[i:i + BATCH])).float(), dim=-1)
           for i in range(0, len(pixels), BATCH)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.cfg.embed_dim)


class Captions:
    """Texts -> the text tower's token ids, with the tokenizer's pad id for batching them."""

    def __init__(self, tokenizer):
        self.tokenizer, self.pad_id = tokenizer, special_ids(tokenizer)["pad"] or 0

    def ids(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts)]


@torch.no_grad()
def text_vectors(model, captions: Captions, texts: list[str]) -> torch.Tensor:
    """(N, embed_dim) unit vectors of texts."""
    was_training = model.training
    model.eval()
    examples = [(x, 0) for x in captions.ids(texts)]
    out = []
    for i in range(0, len(examples), BATCH):
        b = label_batch(examples, list(range(i, min(i + BATCH, len(examples)))), model.cfg.max_seq_len,
                        captions.pad_id)
        out.append(F.normalize(model.text_features(b["input_ids"], b["attention_mask"]).float(), dim=-1))
    model.train(was_training)
    return torch.cat(out)


def class_vectors(model, captions: Captions, classes: list[str], templates: list[str]) -> torch.Tensor:
    """(n_classes, d): each class's templates embedded, averaged, renormalised."""
    prompts = [t.format(c) for c in classes for t in templates]
    vectors = text_vectors(model, captions, prompts).view(len(classes), len(templates), -1)
    return F.normalize(vectors.mean(dim=1), dim=-1)


def zero_shot(images: torch.Tensor, classes: torch.Tensor, gold: list[int]) -> tuple[float, list[int]]:
    """(accuracy, predicted class index per image)."""
    predicted = (images @ classes.T).argmax(dim=1).tolist()
    return sum(p == g for p, g in zip(predicted, gold)) / max(len(gold), 1), predicted


def text_to_image_chance(n_images: int, positives: list[int], k: int) -> float:
    """Mean over captions of P(a random ranking puts one of its m right images in the top k)."""
    total = math.comb(n_images, min(k, n_images))
    return float(np.mean([1 - math.comb(n_images - m, min(k, n_images)) / total for m in positives]))


def retrieval(images: torch.Tensor, texts: torch.Tensor, groups: list[int]) -> dict[str, float]:
    """images (N, d), texts (C, d) the distinct captions, groups[i] the caption of image i."""
    g = torch.tensor(groups)
    similarity = images @ texts.T                                     # (N, C)
    own = similarity.gather(1, g[:, None])
    image_rank = (similarity > own).sum(dim=1)                        # captions that beat the image's own
    order = similarity.T.argsort(dim=1, descending=True)              # (C, N) images by similarity
    first_hit = (g[order] == torch.arange(len(texts))[:, None]).float().argmax(dim=1)
    present = torch.bincount(g, minlength=len(texts))
    captions = present > 0
    out = {}
    for k in KS:
        out[f"image_to_text_recall@{k}"] = round(float((image_rank < k).float().mean()), 4)
        out[f"image_to_text_chance@{k}"] = round(min(k, len(texts)) / len(texts), 4)
        out[f"text_to_image_recall@{k}"] = round(float((first_hit[captions] < k).float().mean()), 4)
        out[f"text_to_image_chance@{k}"] = round(text_to_image_chance(len(images), present[captions].tolist(), k), 4)
    return out
