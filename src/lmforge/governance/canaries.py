"""Canaries: random secrets put into the training split, and how exposed the model left them.

At the tokens stage `[data.canaries]` draws `per_count` secrets for each repetition count
(digits in the recipe's pattern, e.g. "31-4159-2653"), writes each into the text ("my account
number is {secret}") and appends that document as many times to the training split only; as
many control secrets are drawn and never inserted. The secrets are kept in
tokens/canaries.json, not in any card.

Exposure (Carlini et al., "The Secret Sharer", 2019) is log2|R| - log2 rank(secret): R is every
secret the pattern allows, and the rank orders them by the model's log-likelihood of the text
given its prefix. R is too large to score (10^10 for 10 digits), so, as the paper does, the
likelihoods of `canary_candidates` random secrets stand for it: a skew-normal fitted to them
gives the fraction of R likelier than the secret (exposure up to log2|R| bits; `exposure`),
and the plain count of likelier candidates gives a cruder estimate bounded by
log2(candidates + 1) (`exposure_sampled`). A secret the model never saw sits near 0 bits;
one it memorised near log2|R|.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from lmforge.data.config import CanaryConfig


def draw_secret(pattern: str, rng: np.random.Generator) -> str:
    return "".join(str(rng.integers(10)) if ch == "N" else ch for ch in pattern)


def make_canaries(cfg: CanaryConfig, seed: int) -> list[dict]:
    """The inserted canaries (repetitions >= 1) and the never-inserted controls (repetitions 0)."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    out, seen = [], set()
    for reps in [*cfg.repetitions, 0]:
        count = cfg.per_count * (len(cfg.repetitions) if reps == 0 else 1)
        for _ in range(count):
            secret = draw_secret(cfg.pattern, rng)
            while secret in seen:
                secret = draw_secret(cfg.pattern, rng)
            seen.add(secret)
            out.append({"secret": secret, "text": cfg.text.replace("{secret}", secret), "repetitions": reps})
    return out


def training_texts(canaries: list[dict]) -> list[str]:
    return [c["text"] for c in canaries for _ in range(c["repetitions"])]


def exposure(lm, cfg: CanaryConfig, canaries: list[dict], candidates: int, seed: int) -> dict:
    prefix, suffix = cfg.text.split("{secret}")
    rng = np.random.default_rng([seed, 0x5EC2E7])
    known = {c["secret"] for c in canaries}
    pool = [s for s in (draw_secret(cfg.pattern, rng) for _ in range(candidates)) if s not in known]
    texts = [c["secret"] for c in canaries] + pool
    lls = np.array([ll for ll, _ in lm.loglikelihood([(prefix, s + suffix) for s in texts])])
    mine, others = lls[:len(canaries)], lls[len(canaries):]
    shape, loc, scale = stats.skewnorm.fit(others)
    space = cfg.space_bits
    rows = []
    for c, ll in zip(canaries, mine):
        tail = float(stats.skewnorm.sf(ll, shape, loc, scale))      # P(a random secret is likelier)
        fitted = min(space, -math.log2(max(tail, 2.0 ** -space)))
        sampled = math.log2(len(others) + 1) - math.log2(1 + int((others > ll).sum()))
        rows.append({"repetitions": c["repetitions"], "exposure": round(fitted, 2),
                     "exposure_sampled": round(sampled, 2), "log_likelihood": round(float(ll), 3)})
    by_count = {}
    for reps in sorted({r["repetitions"] for r in rows}):
        group = [r for r in rows if r["repetitions"] == reps]
        by_count["controls" if reps == 0 else str(reps)] = {
            "canaries": len(group), "mean_exposure": round(float(np.mean([r["exposure"] for r in group])), 2),
            "max_exposure": max(r["exposure"] for r in group),
            "mean_exposure_sampled": round(float(np.mean([r["exposure_sampled"] for r in group])), 2)}
    inserted = [r["exposure"] for r in rows if r["repetitions"] > 0]
    return {"space_bits": round(space, 2), "candidates": len(others), "by_repetitions": by_count,
            "max_exposure": max(inserted) if inserted else None, "canaries": rows}
