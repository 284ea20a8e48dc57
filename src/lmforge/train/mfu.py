"""Model FLOPs utilisation against this machine's measured matmul peak.

The peak is measured once per machine and dtype (a few large matmuls) and cached
in ~/.cache/lmforge/peak_flops.json, so MFU means "share of what this machine's
matmul kernel really reaches", not of a datasheet number.
"""

from __future__ import annotations

import time

import torch

from lmforge.cache import machine_key, read_table, write_entry

PEAK_TABLE = "peak_flops.json"


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


def measured_peak_flops(dtype: torch.dtype, device: str = "cpu") -> float:
    key = machine_key("peak", device, dtype)
    cached = read_table(PEAK_TABLE).get(key)
    if cached is None:
        # best of three: a busy machine can only make a trial slower, never faster
        cached = max(_matmul_flops(2048 if device == "cpu" else 8192, dtype, device, 0.3) for _ in range(3))
        write_entry(PEAK_TABLE, key, cached)
    return cached


def fastest_autocast_dtype(device: str) -> torch.dtype | None:
    """bfloat16 where its matmuls beat float32 on this machine, else None (stay in float32).

    CPUs without AVX-512-BF16/AMX run bf16 matmuls through a slow fallback (measured
    here at 0.2 GFLOP/s against ~110 in fp32), so the choice is measured, not assumed."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    key = machine_key("bf16_faster", device)
    faster = read_table(PEAK_TABLE).get(key)
    if faster is None:
        faster = _matmul_flops(256, torch.bfloat16, device, 0.2) > _matmul_flops(256, torch.float32, device, 0.2)
        write_entry(PEAK_TABLE, key, faster)
    return torch.bfloat16 if faster else None


def flops_per_token(n_params_nonembed: int, seq_len: int, attention_layers: int, d_model: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus the attention scores (PaLM appendix B)."""
    return 6 * n_params_nonembed + 12 * attention_layers * d_model * seq_len
