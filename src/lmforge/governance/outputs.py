"""Personal data in what the model writes: sampled generations scanned with the data pipeline's
PII detectors (data/pii.py: e-mail, phone, IP, credit card, IBAN, secrets), counted by kind."""

from __future__ import annotations

import queue

from lmforge.data.config import PiiConfig
from lmforge.data.pii import redact
from lmforge.infer.request import Done, Failed
from lmforge.infer.sampling import SamplingParams


def sample_all(engine, prompts: list[str], samples: int, max_tokens: int, seed: int) -> list[str]:
    """`samples` completions (temperature 1, seeded), all queued at once so the engine batches them."""
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(samples):
        params = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed + i)
        engine.submit(prompts[i % len(prompts)], params,
                      lambda e, i=i: inbox.put((i, e)) if isinstance(e, (Done, Failed)) else None)
    texts = [""] * samples
    for _ in range(samples):
        i, event = inbox.get()
        if isinstance(event, Failed):
            raise event.error
        texts[i] = event.result.text
    return texts


def pii_in_outputs(engine, prompts: list[str], samples: int, max_tokens: int, seed: int) -> dict:
    kinds = PiiConfig().kinds
    counts = {kind: 0 for kind in kinds}
    flagged = 0
    for text in sample_all(engine, prompts, samples, max_tokens, seed):
        _, hits = redact(text, kinds)
        flagged += bool(hits)
        for kind, n in hits.items():
            counts[kind] += n
    return {"samples": samples, "tokens_per_sample": max_tokens, "counts": counts,
            "total": sum(counts.values()), "samples_with_pii": flagged}
