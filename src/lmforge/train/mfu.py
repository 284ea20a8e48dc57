"""Model FLOPs utilisation against this machine's measured matmul peak.

The peak is measured once per machine and dtype (a few large matmuls) and cached
in ~/.cache/lmforge/peak_flops.json, so MFU means "share of what this machine's
matmul kernel really reaches", not of a datasheet number.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch


def _cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "lmforge" / "peak_flops.json"


def _load_cache() -> dict:
    path = _cache_path()
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _store_cache(key: str, value) -> None:
    cache = _load_cache()
    cache[key] = value
    try:
        _cache_path().parent.mkdir(parents=True, exist_ok=True)
        _cache_path().write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home only costs a re-measurement next time


def _matmul_flops(n: int, dtype: torch.dtype, device: str, seconds: float) -> float:
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up (kernel selection, caches)
    reps, t0 = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def _key(*parts) -> str:
    return "|".join(str(p) for p in (platform.node(), platform.processor(), torch.get_num_threads(), *parts))


def measured_peak_flops(dtype: torch.dtype, device: str = "cpu") -> float:
    key = _key("peak", device, dtype)
    cached = _load_cache().get(key)
    if cached is None:
        # best of three: a busy machine can only make a trial slower, never faster
        cached = max(_matmul_flops(2048 if device == "cpu" else 8192, dtype, device, 0.3) for _ in range(3))
        _store_cache(key, cached)
    return cached


def fastest_autocast_dtype(device: str) -> torch.dtype | None:
    """bfloat16 where its matmuls beat float32 on this machine, else None (stay in float32).

    CPUs without AVX-512-BF16/AMX run bf16 matmuls through a slow fallback (measured
    here at 0.2 GFLOP/s against ~110 in fp32), so the choice is measured, not assumed."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    key = _key("bf16_faster", device)
    faster = _load_cache().get(key)
    if faster is None:
        faster = _matmul_flops(256, torch.bfloat16, device, 0.2) > _matmul_flops(256, torch.float32, device, 0.2)
        _store_cache(key, faster)
    return torch.bfloat16 if faster else None


def flops_per_token(n_params_nonembed: int, seq_len: int, attention_layers: int, d_model: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus the attention scores (PaLM appendix B)."""
    return 6 * n_params_nonembed + 12 * attention_layers * d_model * seq_len
