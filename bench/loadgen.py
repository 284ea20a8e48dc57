"""Load generation for the server benchmarks and the soak test: a server in a subprocess on
127.0.0.1, streaming chat clients (some of which may hang up mid-stream), its RSS.

Used by bench/serve_load.py, bench/serve_soak.py and tests/test_serve_soak.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@contextlib.contextmanager
def server(run: Path, max_batch: int = 16, threads: int | None = 1):
    """`lmforge.serve.app.serve` on a free port in a child process; yields (base URL, pid)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (f"from lmforge.serve.app import serve; serve({str(run)!r}, host='127.0.0.1', port={port}, "
            f"max_batch={max_batch}, threads={threads}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, LMFORGE_API_KEY=""))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            time.sleep(0.5)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Stats:
    tokens: int = 0
    requests: int = 0          # completed streams (to [DONE])
    hung_up: int = 0           # streams the client left on purpose
    errors: list[str] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)    # of completed streams

    def summary(self, elapsed: float) -> dict:
        return {"tokens_per_s": round(self.tokens / elapsed, 1), "requests": self.requests,
                "hung_up": self.hung_up, "errors": len(self.errors), "first_errors": self.errors[:3],
                "p50_ttft_s": percentile(self.ttft, 0.5), "p99_ttft_s": percentile(self.ttft, 0.99),
                "p50_latency_s": percentile(self.latency, 0.5), "p99_latency_s": percentile(self.latency, 0.99)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3) if ordered else float("nan")


async def client(base: str, deadline: float, max_tokens: int, stats: Stats, seed: int,
                 hang_up: float = 0.0) -> None:
    """Stream chat completions until the deadline; a `hang_up` fraction of them is left mid-stream."""
    rng = random.Random(seed)
    body = {"messages": [{"role": "user", "content": f"Tell me a story number {seed}."}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0.8, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        while time.perf_counter() < deadline:
            start, first, chunks = time.perf_counter(), None, 0
            leave_after = rng.randint(1, max(1, max_tokens // 2)) if rng.random() < hang_up else None
            try:
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        stats.errors.append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                        continue
                    done = False
                    async for line in r.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        if line == "data: [DONE]":
                            done = True
                            continue
                        chunk = json.loads(line[6:])
                        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                            first = first if first is not None else time.perf_counter() - start
                            chunks += 1
                        if chunk.get("usage"):
                            stats.tokens += chunk["usage"]["completion_tokens"]
                        if leave_after is not None and chunks >= leave_after:
                            break
                if leave_after is not None and not done:
                    stats.hung_up += 1
                    continue
                if not done:
                    stats.errors.append("stream ended without [DONE]")
                    continue
                stats.ttft.append(first if first is not None else time.perf_counter() - start)
                stats.latency.append(time.perf_counter() - start)
                stats.requests += 1
            except httpx.HTTPError as e:
                stats.errors.append(f"{type(e).__name__}: {e}")


async def load(base: str, clients: int, seconds: float, max_tokens: int, hang_up: float = 0.0) -> dict:
    stats = Stats()
    start = time.perf_counter()
    await asyncio.gather(*(client(base, start + seconds, max_tokens, stats, i, hang_up) for i in range(clients)))
    return stats.summary(time.perf_counter() - start)


def scheduler_gauges(base: str) -> dict:
    """The server's batch occupancy and queue length, from /metrics."""
    out = {}
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        for name in ("lmforge_batch_occupancy", "lmforge_queue_length"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out
