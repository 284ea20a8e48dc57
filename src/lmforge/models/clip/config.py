"""The `clip` family's config: an image encoder and a text encoder meeting in one embedding space."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from lmforge.models.bert.config import BertConfig
from lmforge.models.config import ModelConfig


@dataclass
class ClipConfig(ModelConfig):
    arch: str = "clip"
    n_layer: int = 2                 # the text encoder's layers
    d_model: int = 128
    # the text encoder (the `bert` family's encoder, mean-pooled): n_layer, d_model, max_seq_len above
    n_head: int = 4
    max_seq_len: int = 32            # captions are short
    # the image encoder: a ViT over image_size x image_size RGB images cut into patch_size patches
    image_size: int = 32
    patch_size: int = 4
    vision_layers: int = 4
    vision_d_model: int = 0          # 0 = d_model
    vision_heads: int = 0            # 0 = n_head
    embed_dim: int = 128             # the shared space both encoders project into
    logit_scale_init: float = math.log(1 / 0.07)   # CLIP's initial temperature, learned from there
    max_logit_scale: float = 100.0                 # CLIP clips exp(scale) here for stability
    norm_eps: float = 1e-6

    PRESETS: ClassVar[dict[str, dict]] = {}

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def text_config(self) -> BertConfig:
        return BertConfig(n_layer=self.n_layer, d_model=self.d_model, n_head=self.n_head, max_seq_len=self.max_seq_len,
                          vocab_size=self.vocab_size, type_vocab_size=0, dropout=self.dropout, norm_eps=self.norm_eps,
                          init_std=self.init_std)

    def vision_config(self) -> BertConfig:
        """The ViT's blocks are the encoder's blocks at the vision width (the 'vocabulary' is unused)."""
        return BertConfig(n_layer=self.vision_layers, d_model=self.vision_d_model or self.d_model,
                          n_head=self.vision_heads or self.n_head, max_seq_len=self.patches + 1, vocab_size=1,
                          type_vocab_size=0, dropout=self.dropout, norm_eps=self.norm_eps, init_std=self.init_std)

    def validate(self) -> None:
        super().validate()
        if self.image_size < 1 or self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.vision_layers < 1 or self.embed_dim < 1:
            raise ValueError("vision_layers and embed_dim must be >= 1")
        for width, heads, what in ((self.d_model, self.n_head, "d_model / n_head"),
                                   (self.vision_d_model or self.d_model, self.vision_heads or self.n_head,
                                    "vision_d_model / vision_heads")):
            if heads < 1 or width % heads:
                raise ValueError(f"{what}: {width} is not divisible by {heads} heads")


ClipConfig.PRESETS = {
    "clip-tiny": dict(n_layer=2, d_model=128, n_head=4, vision_layers=4, image_size=32, patch_size=4, embed_dim=128),
    "clip-small": dict(n_layer=4, d_model=256, n_head=4, vision_layers=6, image_size=64, patch_size=8, embed_dim=256),
}
