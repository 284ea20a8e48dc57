"""The `clip` family's model: a ViT and a BERT-style text encoder projected into one space.

    image (B, 3, S, S) -> patches -> [CLS] + patch tokens + positions -> encoder blocks -> [CLS] state
                       -> image_projection -> unit vector
    caption ids (B, T) -> the `bert` family's encoder -> mean over real tokens
                       -> text_projection  -> unit vector
    logits = exp(logit_scale) * image @ text.T       (a learned temperature, clipped at 100)

The ViT's blocks are the `bert` family's post-LayerNorm encoder layers, attending both ways;
the text encoder is that family's encoder without its masked-LM head (CLIP reads the states).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.models.bert.model import BertEncoder, Layer
from lmforge.models.clip.config import ClipConfig


class VisionTransformer(nn.Module):
    """forward(pixels (B, 3, S, S)) -> the [CLS] token's last state (B, vision width)."""

    def __init__(self, cfg: ClipConfig):
        super().__init__()
        vc = cfg.vision_config()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(3, vc.d_model, cfg.patch_size, stride=cfg.patch_size)
        self.class_embedding = nn.Parameter(torch.zeros(vc.d_model))
        self.position_embedding = nn.Parameter(torch.zeros(cfg.patches + 1, vc.d_model))
        self.pre_norm = nn.LayerNorm(vc.d_model, eps=cfg.norm_eps)     # CLIP's ln_pre
        self.layer = nn.ModuleList(Layer(vc) for _ in range(vc.n_layer))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-2:] != (self.cfg.image_size, self.cfg.image_size):
            raise ValueError(f"images of {tuple(pixels.shape[-2:])} pixels; the model reads "
                             f"{self.cfg.image_size}x{self.cfg.image_size}")
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)            # (B, patches, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.pre_norm(torch.cat([cls, x], dim=1) + self.position_embedding)
        for layer in self.layer:
            x = layer(x, None)
        return x[:, 0]


class DualEncoder(nn.Module):
    """forward(pixels, input_ids, attention_mask) -> (image vectors, text vectors, logit scale)."""

    def __init__(self, cfg: ClipConfig):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError("ClipConfig.vocab_size must be set before building the model")
        self.cfg = cfg
        self.text = BertEncoder(cfg.text_config())
        del self.text.cls
        self.vision = VisionTransformer(cfg)
        self.text_projection = nn.Linear(cfg.d_model, cfg.embed_dim, bias=False)
        self.image_projection = nn.Linear(cfg.vision_d_model or cfg.d_model, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale_init)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for m in self.vision.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, 0.0, self.cfg.init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.vision.class_embedding, 0.0, self.cfg.init_std)
        nn.init.normal_(self.vision.position_embedding, 0.0, self.cfg.init_std)
        for proj in (self.text_projection, self.image_projection):
            nn.init.normal_(proj.weight, 0.0, proj.in_features ** -0.5)
        self.logit_scale.fill_(self.cfg.logit_scale_init)

    def num_lookup_params(self) -> int:
        return self.text.num_lookup_params() + self.vision.position_embedding.numel()

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected, not yet unit-length, caption vectors (B, embed_dim)."""
        states = self.text.encode(input_ids, attention_mask)
        return self.text_projection(self.text.pool(states, attention_mask, "mean"))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_projection(self.vision(pixels))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = F.normalize(self.image_features(pixels).float(), dim=-1)
        texts = F.normalize(self.text_features(input_ids, attention_mask).float(), dim=-1)
        return images, texts, self.scale().float()
