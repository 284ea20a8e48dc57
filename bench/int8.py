"""int8 weights in lmforge's own engine: decode speed and what they cost in bits per byte.

    python bench/int8.py [--run runs/quickstart-base] [--windows 40]
    python bench/int8.py --random 8x512          # speed only: a random-weight Llama-layout model

The run's model decodes the same prompt (batch 1, greedy, 128 new tokens) with float32 and with
int8 weights (`Engine(int8=True)`, `lmforge generate/serve --dtype int8`), and scores the same
validation windows (255 tokens scored, every token once) through the engine's prompt log-probabilities
with both. Prints one JSON line per setting and, last, {"float32": {...}, "int8": {...},
"speedup": ..., "bits_per_byte_cost": ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architectures import cpu_name  # noqa: E402

from lmforge.infer.engine import Engine
from lmforge.tokenizer.shards import read_shards

WINDOW = 255          # + the token before each window: the model's context of 256


def measure(run: Path, dtype: str | None, windows: int) -> dict:
    scored = (run / "tokens" / "meta.json").is_file()
    _, val, meta = read_shards(run / "tokens") if scored else (None, list(range(10, 42)), None)
    engine = Engine.from_run(run, dtype=dtype)
    try:
        prompt = [int(t) for t in val[:32]]
        engine.generate(prompt, max_tokens=128, temperature=0.0, ignore_eos=True)
        t0 = time.perf_counter()
        engine.generate(prompt, max_tokens=128, temperature=0.0, ignore_eos=True)
        tps = 128 / (time.perf_counter() - t0)
        nll, n = 0.0, 0
        for i in range(windows if scored else 0):
            ids = [int(t) for t in val[i * WINDOW:(i + 1) * WINDOW + 1]]
            logprobs = engine.prompt_logprobs(ids)[1:]
            nll -= sum(logprobs)
            n += len(logprobs)
    finally:
        engine.close()
    bpb = nll / math.log(2) / (meta["val_bytes"] * n / meta["val_tokens"]) if scored else None
    return {"weights": dtype or "float32", "tokens_per_s": round(tps, 1),
            "bits_per_byte": None if bpb is None else round(bpb, 4), "scored_tokens": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/quickstart-base"))
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--random", metavar="LAYERSxWIDTH", help="time a random-weight model of this shape instead")
    args = ap.parse_args()
    if args.random:
        import tempfile
        from lmforge.infer.tiny import make_tiny_run
        from lmforge.models.llama import LlamaConfig
        layers, width = (int(x) for x in args.random.split("x"))
        args.run = make_tiny_run(Path(tempfile.mkdtemp()) / "random", LlamaConfig(
            preset="llama-mini", n_layer=layers, d_model=width, n_head=max(1, width // 64), max_seq_len=512),
            vocab_size=4096)
    elif not (args.run / "tokens" / "meta.json").is_file():
        sys.exit(f"{args.run} is not a trained run with token shards; run `make demo` (or pass --run)")
    results = {}
    for dtype in (None, "int8"):
        r = measure(args.run, dtype, args.windows)
        print(json.dumps(r), flush=True)
        results[r["weights"]] = r
    print(json.dumps({**results, "speedup": round(results["int8"]["tokens_per_s"] / results["float32"]["tokens_per_s"], 3),
                      "bits_per_byte_cost": None if results["int8"]["bits_per_byte"] is None else
                      round(results["int8"]["bits_per_byte"] - results["float32"]["bits_per_byte"], 4),
                      "cpu": cpu_name()}))


if __name__ == "__main__":
    main()
