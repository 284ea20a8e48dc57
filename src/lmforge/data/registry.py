"""The registry of cleaning steps: a recipe's `[data] steps` names -> Step objects.

Apart from `steps.py` (the Step interface), which every step module imports, so that
no step module is imported by the interface it implements.
"""

from __future__ import annotations

from lmforge.data.config import DataConfig
from lmforge.data.steps import FinalCheck, Step


def build_steps(cfg: DataConfig, seed: int) -> list[Step]:
    """The recipe's steps, in order, followed by the final check."""
    # Imported here so a recipe that does not list a step never loads its dependencies.
    from lmforge.data import decontaminate, dedup, langid, nlp, normalize, pii, quality
    makers = {
        "normalize": lambda: normalize.Normalize(cfg.normalize),
        "langid": lambda: langid.LangId(cfg.langid),
        "quality": lambda: quality.Quality(cfg.quality),
        "exact_dedup": lambda: dedup.ExactDedup(cfg.exact_dedup),
        "minhash": lambda: dedup.MinHashDedup(cfg.minhash, seed),
        "pii": lambda: pii.Pii(cfg.pii),
        "decontaminate": lambda: decontaminate.Decontaminate(cfg.decontaminate),
        "nlp": lambda: nlp.Nlp(cfg.nlp),
    }
    return [makers[name]() for name in cfg.steps] + [FinalCheck(cfg.min_chars)]
