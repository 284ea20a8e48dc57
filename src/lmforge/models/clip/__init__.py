"""`clip`: an image encoder and a text encoder trained contrastively into one space (CLIP)."""

from __future__ import annotations

from lmforge.models.clip.config import ClipConfig
from lmforge.models.clip.model import DualEncoder
from lmforge.models.registry import Family, roles_by_name


def _role(name: str, p) -> str:
    if name.endswith("_embeddings.weight") or name in ("vision.patch_embedding.weight",
                                                       "vision.position_embedding"):
        return "embedding"
    return "matrix" if p.dim() == 2 else "vector"


def _layers(model: DualEncoder) -> list:
    return [*model.vision.layer, *model.text.bert.encoder.layer]


def _describe(cfg: ClipConfig) -> str:
    vc = cfg.vision_config()
    return (f"dual encoder (arch `clip`, CLIP's design): a ViT of {vc.n_layer} layers x {vc.d_model} over "
            f"{cfg.image_size}x{cfg.image_size} images in {cfg.patch_size}-pixel patches, a text encoder of "
            f"{cfg.n_layer} layers x {cfg.d_model} (BERT's blocks, mean-pooled), both projected to {cfg.embed_dim} "
            f"dimensions, a learned temperature")


FAMILY = Family(
    arch="clip", config=ClipConfig, build=DualEncoder, objectives=("contrastive",),
    generative=False, recurrent=False,
    param_roles=lambda model: roles_by_name(model, _role),
    fsdp_units=_layers, blocks=_layers,
    features=lambda model, ids, mask: model.text_features(ids, mask),
    decoder=None, describe=_describe)

__all__ = ["FAMILY", "ClipConfig", "DualEncoder"]
