"""Personal data in what the model writes: sampled generations scanned with the data pipeline's
PII detectors (data/pii.py: e-mail, phone, IP, credit card, IBAN, secrets), counted by kind."""

from __future__ import annotations

from lmforge.data.config import PiiConfig
from lmforge.data.pii import redact


def pii_in_outputs(engine, prompts: list[str], samples: int, max_tokens: int, seed: int) -> dict:
    kinds = PiiConfig().kinds
    counts = {kind: 0 for kind in kinds}
    flagged = 0
    for i in range(samples):
        text = engine.generate(prompts[i % len(prompts)], max_tokens=max_tokens, temperature=1.0, top_k=0,
                               seed=seed + i).text
        _, hits = redact(text, kinds)
        flagged += bool(hits)
        for kind, n in hits.items():
            counts[kind] += n
    return {"samples": samples, "tokens_per_sample": max_tokens, "counts": counts,
            "total": sum(counts.values()), "samples_with_pii": flagged}
