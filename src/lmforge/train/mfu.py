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

from lmforge.models.config import ModelConfig


def _cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "lmforge" / "peak_flops.json"


def measured_peak_flops(dtype: torch.dtype, device: str = "cpu") -> float:
    key = f"{platform.node()}|{platform.processor()}|{device}|{dtype}|{torch.get_num_threads()}"
    path = _cache_path()
    cache = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    if key in cache:
        return cache[key]
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        a @ b
        reps += 1
    if device != "cpu":
        torch.cuda.synchronize()
    peak = 2 * n ** 3 * reps / (time.perf_counter() - t0)
    cache[key] = peak
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return peak


def flops_per_token(cfg: ModelConfig, n_params_nonembed: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus the attention scores (PaLM appendix B)."""
    return 6 * n_params_nonembed + 12 * cfg.n_layer * cfg.d_model * seq_len
