"""Soak the server: many concurrent streaming clients for a while, some hanging up mid-stream.

Starts the server in a subprocess on 127.0.0.1 with a random quickstart-sized model and
its default batch (16 rows, so most clients queue), runs the clients for a bounded time
while sampling the server's RSS, then checks that no sequence was left behind (batch
occupancy and queue length back to 0) and that the server still answers. Prints one JSON
line per RSS sample and, last, the summary: p50/p99 latency and time to first token,
completed and hung-up streams, errors, RSS after warm-up and at the end, their ratio.

    python bench/serve_soak.py [--clients 64] [--seconds 60] [--hang-up 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architectures import cpu_name  # noqa: E402
from loadgen import load, rss_mib, scheduler_gauges, server  # noqa: E402

WARM_UP = 0.25        # the first quarter of the run: allocator pools, KV cache rows, JIT caches fill up


def soak(run: Path, clients: int, seconds: float, hang_up: float, max_tokens: int = 64,
         sample_every: float = 2.0) -> dict:
    with server(run) as (base, pid):
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.perf_counter()
            while not stop.wait(sample_every):
                samples.append((round(time.perf_counter() - start, 1), rss_mib(pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = asyncio.run(load(base, clients, seconds, max_tokens, hang_up))
        stop.set()
        sampler.join()
        deadline = time.time() + 10      # hung-up requests are dropped at the scheduler's next step
        while (gauges := scheduler_gauges(base)) and any(gauges.values()) and time.time() < deadline:
            time.sleep(0.2)
        after = httpx.post(base + "/v1/chat/completions", timeout=30,
                           json={"messages": [{"role": "user", "content": "Still there?"}], "max_tokens": 4})
    warm = [rss for t, rss in samples if t >= seconds * WARM_UP]
    return {**result, "clients": clients, "seconds": seconds, "hang_up": hang_up, "rss_samples": samples,
            "rss_mib_after_warm_up": warm[0] if warm else None, "rss_mib_end": warm[-1] if warm else None,
            "rss_growth_after_warm_up": round(warm[-1] / warm[0], 3) if warm else None,
            "left_in_scheduler": gauges, "answers_after": after.status_code}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--hang-up", type=float, default=0.25, help="fraction of streams left mid-way")
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    run = make_tiny_run(Path(tempfile.mkdtemp()) / "soak-run", LlamaConfig(preset="llama-mini"), vocab_size=4096)
    result = soak(run, args.clients, args.seconds, args.hang_up, args.max_tokens)
    for t, rss in result.pop("rss_samples"):
        print(json.dumps({"t_s": t, "rss_mib": rss}))
    print(json.dumps({**result, "cpu": cpu_name()}))


if __name__ == "__main__":
    main()
