"""Training throughput (tokens/s) and MFU at the 6-layer, 384-wide, context-256 shape, for the
baseline architecture (nanoGPT's GPT-2: LayerNorm, GELU, learned positions, tied head, fp32) and
lmforge's recipe, in the same run, on the same data and batch.

    python bench/throughput.py [--data PATH] [--steps 12] [--batch 16]

Prints one JSON line per recipe and, last, {"baseline": {"tokens_per_s", "mfu"}, "lmforge": {...}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from charlm import DEFAULT_DATA, RECIPES, build_trainer, load_chars  # noqa: E402

SHAPE = dict(n_layer=6, n_head=6, d_model=384, max_seq_len=256)


def measure(name: str, data, steps: int, batch: int, warmup: int) -> dict:
    train, val, vocab = data
    recipe = dict(RECIPES[name])
    recipe["model"] = replace(recipe["model"].resolved(), **SHAPE, preset="")
    records = []
    trainer = build_trainer(recipe, train, val, vocab, log=records.append, batch_size=batch, seq_len=256,
                            max_steps=warmup + steps, time_budget_s=0, eval_every=0, checkpoint_every=0,
                            keep_best=False, log_every=warmup, warmup_steps=0)
    trainer.validate = lambda: (float("nan"), {})    # throughput only: skip the final validation
    trainer.fit()
    after = [r for r in records if r["kind"] == "train" and r["step"] > warmup]   # windows after warm-up
    tps = sum(r["tokens_per_s"] for r in after) / len(after)
    return {"tokens_per_s": round(tps, 1), "mfu": round(sum(r["mfu"] for r in after) / len(after), 4),
            "autocast": str(trainer.autocast_dtype), "params": sum(p.numel() for p in trainer.model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"data not found: {args.data}")
    data = load_chars(Path(args.data))
    out = {}
    for name in ("baseline", "lmforge"):
        out[name] = measure(name, data, args.steps, args.batch, args.warmup)
        print(json.dumps({"recipe": name, **out[name]}), flush=True)
    out["ratio"] = round(out["lmforge"]["tokens_per_s"] / out["baseline"]["tokens_per_s"], 3)
    print(json.dumps({**out, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
