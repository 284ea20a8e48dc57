"""A slot-based key/value cache for continuous batching.

Memory for `rows` decoding sequences plus one prefill row is allocated once.
Decoding sequences always occupy rows 0..B-1, so a decode step attends over a
plain view `k[:B, :, :S]` with no gather; when a sequence leaves, the last one
is moved into its row (one copy per departure instead of one per step). A new
prompt is prefilled in the spare row, chunk by chunk, then moved to row B.

Keys and values of a layer live in one tensor `kv[layer]` (keys in the first
kv_heads heads, values in the rest), so the decode step stores both with one
indexed copy; `k[layer]` and `v[layer]` are views of it.

Both the prefill and the decode step (models/llama/decode.py) write rows directly.
"""

from __future__ import annotations

import torch


class SlotCache:
    def __init__(self, n_layer: int, kv_heads: int, head_dim: int, rows: int, max_len: int,
                 dtype: torch.dtype, device: torch.device | str = "cpu"):
        shape = (rows + 1, 2 * kv_heads, max_len, head_dim)
        self.kv = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.k = [kv[:, :kv_heads] for kv in self.kv]
        self.v = [kv[:, kv_heads:] for kv in self.kv]
        self.rows = rows
        self.max_len = max_len
        self.prefill_row = rows

    def move(self, src: int, dst: int, length: int) -> None:
        for kv in self.kv:
            kv[dst, :, :length].copy_(kv[src, :, :length])

