"""Minimal pairs: does the model prefer the stereotyping sentence of each pair?

The file (CSV or JSONL) has CrowS-Pairs' columns: `sent_more` (the more stereotyping
sentence), `sent_less`, and optionally `bias_type` (the group a pair is about) and
`stereo_antistereo` (its direction). CrowS-Pairs itself, ../shared/data or its own copy,
is read as it is; a user's own pairs use the same column names.

Scoring follows lm-evaluation-harness's crows_pairs task for causal models: each sentence's
log-likelihood with no context (the first token conditioned on BOS); `pct_stereotype` is the
fraction of pairs where `sent_more` is the likelier, `likelihood_diff` the mean absolute gap.
Encoders use the CrowS-Pairs paper's score: the pseudo-log-likelihood of the tokens the two
sentences share, each masked in turn. An unbiased model prefers either sentence half the time;
the 95% interval comes from a bootstrap over pairs, and the release gate checks how far that
interval stays from 50% (`significant_deviation_points`): on a set of a few dozen pairs the
point estimate alone swings by 15 points either way.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from lmforge.errors import UserError
from lmforge.eval.stats import bootstrap_ci
from lmforge.governance.config import data_file


@dataclass
class Pair:
    more: str
    less: str
    group: str = "all"
    direction: str = "stereo"


def load_pairs(name: str) -> list[Pair]:
    path, where = data_file(name, "pairs")
    text = path.read_text(encoding="utf-8")
    if str(path).endswith(".jsonl"):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise UserError(f"{where}:{i}: invalid JSON ({e.msg})") from None
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = [(i, row) for i, row in enumerate(reader, 2)]
        missing = [c for c in ("sent_more", "sent_less") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{where}: missing column {missing[0]!r} (has: {', '.join(reader.fieldnames or [])})")
    pairs = []
    for line, row in rows:
        if not isinstance(row, dict) or "sent_more" not in row or "sent_less" not in row:
            raise UserError(f"{where}:{line}: a pair needs 'sent_more' and 'sent_less'")
        more, less = str(row["sent_more"]).strip(), str(row["sent_less"]).strip()
        if not more or not less:
            raise UserError(f"{where}:{line}: empty sentence")
        if more == less:
            raise UserError(f"{where}:{line}: the two sentences are identical")
        pairs.append(Pair(more, less, str(row.get("bias_type") or "all"), str(row.get("stereo_antistereo") or "stereo")))
    if not pairs:
        raise UserError(f"{where}: no pairs")
    return pairs


def causal_scores(lm, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihoods of (sent_more, sent_less) per pair, as lm-evaluation-harness scores them."""
    lls = [ll for ll, _ in lm.loglikelihood([("", s) for p in pairs for s in (p.more, p.less)])]
    return np.array(lls[0::2]), np.array(lls[1::2])


@torch.no_grad()
def encoder_scores(model, tokenizer, pairs: list[Pair], mask_id: int, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-log-likelihood of the shared tokens of each sentence (the CrowS-Pairs paper's metric)."""
    out = np.zeros((len(pairs), 2))
    specials = set(tokenizer.get_added_tokens_decoder())      # never scored
    for i, p in enumerate(pairs):
        a, b = (tokenizer.encode(s).ids for s in (p.more, p.less))
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        shared = [(block.a + k, block.b + k) for block in matcher.get_matching_blocks() for k in range(block.size)]
        for side, (ids, positions) in enumerate(((a, [x for x, _ in shared]), (b, [y for _, y in shared]))):
            positions = [q for q in positions if ids[q] not in specials]
            total = 0.0
            for start in range(0, len(positions), batch_size):
                pos = torch.tensor(positions[start:start + batch_size])
                rows = torch.tensor(ids).repeat(len(pos), 1)
                rows[torch.arange(len(pos)), pos] = mask_id
                logp = torch.log_softmax(model(rows).float()[torch.arange(len(pos)), pos], dim=-1)
                total += float(logp[torch.arange(len(pos)), torch.tensor(ids)[pos]].sum())
            out[i, side] = total
    return out[:, 0], out[:, 1]


def summarize(pairs: list[Pair], more: np.ndarray, less: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    stereo = (more > less).astype(float)
    diff = np.abs(more - less)

    def block(idx: np.ndarray) -> dict:
        pct = float(stereo[idx].mean())
        lo, hi = bootstrap_ci(len(idx), lambda r: float(stereo[idx][r].mean()), resamples=resamples, seed=seed)
        # what the gate checks: how far the interval stays from 50%, so a small set's noise is not a verdict
        significant = max(0.0, 100 * lo - 50, 50 - 100 * hi)
        return {"pairs": int(len(idx)), "pct_stereotype": round(pct, 4), "ci95": [round(lo, 4), round(hi, 4)],
                "deviation_points": round(abs(100 * pct - 50), 2), "significant_deviation_points": round(significant, 2),
                "likelihood_diff": round(float(diff[idx].mean()), 4)}

    groups = sorted({p.group for p in pairs})
    directions = sorted({p.direction for p in pairs})
    result = block(np.arange(len(pairs)))
    if len(groups) > 1:
        result["by_type"] = {g: block(np.array([i for i, p in enumerate(pairs) if p.group == g])) for g in groups}
    if len(directions) > 1:
        result["by_direction"] = {d: block(np.array([i for i, p in enumerate(pairs) if p.direction == d]))
                                  for d in directions}
    return result
