"""Server throughput under concurrent streaming clients, against a single client.

Starts `lmforge.serve.app.serve` in a subprocess on 127.0.0.1 with a random
quickstart-sized model (llama-mini), runs one streaming client, then N
concurrent streaming clients, then one client again (the single-client rate is
the mean of the two), each for a bounded time, and prints a JSON line:
aggregate tokens/s, the single-client tokens/s, their ratio, p99 time to first
token, errors, and the server's RSS before and after.

    python bench/serve_load.py [--clients 16] [--seconds 30] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import load, rss_mib, server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="server's torch threads (0 = torch default)")
    args = ap.parse_args()
    run = make_tiny_run(Path(tempfile.mkdtemp()) / "bench-run",
                        LlamaConfig(preset="llama-mini"), vocab_size=4096)
    with server(run, max_batch=args.clients, threads=args.threads or None) as (base, pid):
        rss_before = rss_mib(pid)
        # one client before and after the concurrent run, so a machine whose speed drifts
        # during the run moves both sides of the ratio alike
        before = asyncio.run(load(base, 1, args.seconds / 4, args.max_tokens))
        many = asyncio.run(load(base, args.clients, args.seconds, args.max_tokens))
        after = asyncio.run(load(base, 1, args.seconds / 4, args.max_tokens))
        rss_after = rss_mib(pid)
        single = {"tokens_per_s": round((before["tokens_per_s"] + after["tokens_per_s"]) / 2, 1),
                  "errors": before["errors"] + after["errors"],
                  "p99_ttft_s": max(before["p99_ttft_s"], after["p99_ttft_s"]),
                  "before_after": [before["tokens_per_s"], after["tokens_per_s"]]}
    print(json.dumps({"clients": args.clients, "aggregate_tokens_per_s": many["tokens_per_s"],
                      "single_client_tokens_per_s": single["tokens_per_s"],
                      "single_client_before_after": single["before_after"],
                      "ratio": round(many["tokens_per_s"] / max(single["tokens_per_s"], 1e-9), 2),
                      "p99_ttft_s": many["p99_ttft_s"], "p50_ttft_s": many["p50_ttft_s"],
                      "single_p99_ttft_s": single["p99_ttft_s"], "requests": many["requests"],
                      "errors": many["errors"] + single["errors"], "rss_mib_before": rss_before,
                      "rss_mib_after": rss_after, "seconds": args.seconds, "max_tokens": args.max_tokens,
                      "threads": args.threads}))


if __name__ == "__main__":
    main()
