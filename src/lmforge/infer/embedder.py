"""Texts in, one unit-length vector each out (`POST /v1/embeddings`).

The vector is the family's sequence features, the one a classifier head reads: the mean of the
encoder's states over a text's tokens for `bert` (mBERT-style sentence embeddings), the last
token's state for the causal families, which has read the whole text, and for `clip` the caption
vector in the space it shares with images. Texts are batched right-padded with an attention mask,
so a text's vector does not depend on its neighbours. A `clip` run also embeds images
(`embed_images`): decoded, squashed to the model's image size, through the ViT and its projection.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.infer.reader import Reader
from lmforge.models.registry import family_of
from lmforge.train.objectives.classify import label_batch
from lmforge.vision.images import BadImage, decode, resized
from lmforge.vision.metrics import image_vectors

BATCH = 32


class Embedder(Reader):
    def __init__(self, model, tokenizer, threads: int | None = None):
        super().__init__(model, tokenizer, threads)
        self.family = family_of(model)
        self.context = model.cfg.max_seq_len
        self.dimensions = getattr(model.cfg, "embed_dim", model.cfg.d_model)    # clip projects its features

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts)]

    def check(self, inputs: list[list[int]]) -> None:
        vocab = self.model.cfg.vocab_size
        for i, ids in enumerate(inputs):
            if not ids:
                raise UserError(f"input[{i}] is empty")
            if len(ids) > self.context:
                raise UserError(f"input[{i}] is {len(ids)} tokens; the model's context is {self.context}")
            if not all(isinstance(t, int) and 0 <= t < vocab for t in ids):
                raise UserError(f"input[{i}]: token ids must be integers in [0, {vocab})")

    @torch.no_grad()
    def embed(self, inputs: list[list[int]]) -> torch.Tensor:
        """(N, d) float32 unit vectors of token-id sequences, in order."""
        self.check(inputs)
        out = []
        with self.forward_pass():
            examples = [(ids, 0) for ids in inputs]     # classification's padded batches, labels unused
            for start in range(0, len(inputs), BATCH):
                b = label_batch(examples, list(range(start, min(start + BATCH, len(inputs)))), self.context,
                                self.pad_id)
                features = self.family.features(self.model, b["input_ids"], b["attention_mask"])
                out.append(F.normalize(features.float(), dim=-1))
        return torch.cat(out)

    @property
    def reads_images(self) -> bool:
        return hasattr(self.model, "image_features")

    @torch.no_grad()
    def embed_images(self, images: list[bytes], names: list[str] | None = None) -> torch.Tensor:
        """(N, d) float32 unit vectors of encoded images (PNG, JPEG, ...), in the space of the texts'.
        names: what an error calls each image (a path, input[3]); image[i] by default."""
        if not self.reads_images:
            raise UserError(f"this model (arch '{self.model.cfg.arch}') reads text only; images need a "
                            f"clip run (model.arch = \"clip\")")
        if not images:
            raise UserError("no images to embed")
        size = self.model.cfg.image_size
        pixels = []
        for i, data in enumerate(images):
            try:
                pixels.append(resized(decode(data), size))
            except BadImage as e:
                raise UserError(f"{names[i] if names else f'image[{i}]'}: not a readable image ({e})") from None
        with self.forward_pass():
            return image_vectors(self.model, np.stack(pixels))
