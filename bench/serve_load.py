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
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def client(base: str, deadline: float, max_tokens: int, stats: dict, seed: int) -> None:
    body = {"messages": [{"role": "user", "content": f"Tell me a story number {seed}."}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0.8, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while time.perf_counter() < deadline:
            start, first = time.perf_counter(), None
            try:
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        stats["errors"] += 1
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                            first = time.perf_counter() - start
                        if chunk.get("usage"):
                            stats["tokens"] += chunk["usage"]["completion_tokens"]
                stats["ttft"].append(first if first is not None else time.perf_counter() - start)
                stats["requests"] += 1
            except httpx.HTTPError:
                stats["errors"] += 1


async def load(base: str, clients: int, seconds: float, max_tokens: int) -> dict:
    stats = {"tokens": 0, "requests": 0, "errors": 0, "ttft": []}
    start = time.perf_counter()
    await asyncio.gather(*(client(base, start + seconds, max_tokens, stats, i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    ttft = sorted(stats["ttft"]) or [float("nan")]
    return {"tokens_per_s": round(stats["tokens"] / elapsed, 1), "requests": stats["requests"],
            "errors": stats["errors"], "p50_ttft_s": round(ttft[len(ttft) // 2], 3),
            "p99_ttft_s": round(ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="server's torch threads (0 = torch default)")
    args = ap.parse_args()
    run = make_tiny_run(Path(tempfile.mkdtemp()) / "bench-run",
                        LlamaConfig(preset="llama-mini"), vocab_size=4096)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (f"from lmforge.serve.app import serve; serve({str(run)!r}, host='127.0.0.1', port={port}, "
            f"max_batch={args.clients}, threads={args.threads or None}, log_level='warning')")
    server = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, LMFORGE_API_KEY=""))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        rss_before = rss_mib(server.pid)
        # one client before and after the concurrent run, so a machine whose speed drifts
        # during the run moves both sides of the ratio alike
        before = asyncio.run(load(base, 1, args.seconds / 4, args.max_tokens))
        many = asyncio.run(load(base, args.clients, args.seconds, args.max_tokens))
        after = asyncio.run(load(base, 1, args.seconds / 4, args.max_tokens))
        rss_after = rss_mib(server.pid)
        single = {"tokens_per_s": round((before["tokens_per_s"] + after["tokens_per_s"]) / 2, 1),
                  "errors": before["errors"] + after["errors"],
                  "p99_ttft_s": max(before["p99_ttft_s"], after["p99_ttft_s"]),
                  "before_after": [before["tokens_per_s"], after["tokens_per_s"]]}
    finally:
        server.terminate()
        server.wait(timeout=30)
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
