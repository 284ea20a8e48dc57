"""Muon's cost at bench/throughput.py's shape (6 layers x 384, context 256, batch 16): the
Newton-Schulz iteration over every hidden matrix, one matrix at a time against batched by shape,
in float32 and bfloat16, against the forward + backward pass it follows.

    python bench/muon.py [--repeats 5]

Prints one JSON line per variant and, last, a summary with Muon's share of the training step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train.muon import orthogonalize
from lmforge.train.mfu import fastest_autocast_dtype

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architectures import cpu_name  # noqa: E402

SHAPE = dict(n_layer=6, n_head=6, d_model=384, max_seq_len=256, vocab_size=4096)


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Transformer(LlamaConfig(**SHAPE).resolved())
    matrices = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n and "lm_head" not in n]
    grads = [torch.randn_like(p) for p in matrices]
    by_shape: dict[tuple, list] = {}
    for g in grads:
        by_shape.setdefault(tuple(g.shape), []).append(g)
    autocast = fastest_autocast_dtype("cpu")
    x = torch.randint(0, SHAPE["vocab_size"], (args.batch, SHAPE["max_seq_len"]))

    def train_pass():
        with torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1).float(), x.flatten())
        loss.backward()
        model.zero_grad(set_to_none=True)

    step = best_of(train_pass, args.repeats)
    rows = {}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).split(".")[-1]
        rows[f"per_matrix_{name}"] = best_of(lambda: [orthogonalize(g, 5, dtype) for g in grads], args.repeats)
        rows[f"batched_{name}"] = best_of(
            lambda: [orthogonalize(torch.stack(gs), 5, dtype) for gs in by_shape.values()], args.repeats)
    for name, seconds in rows.items():
        print(json.dumps({"variant": name, "ms": round(1e3 * seconds, 2), "share_of_step": round(seconds / (seconds + step), 3)}))
    best = min(rows, key=rows.get)
    print(json.dumps({"cpu": cpu_name(), "threads": torch.get_num_threads(), "matrices": len(grads),
                      "shapes": {str(k): len(v) for k, v in by_shape.items()},
                      "forward_backward_ms": round(1e3 * step, 1), "autocast": str(autocast),
                      **{f"{k}_ms": round(1e3 * v, 2) for k, v in rows.items()},
                      "fastest": best, "fastest_share_of_step": round(rows[best] / (rows[best] + step), 3),
                      "per_matrix_fp32_share_of_step": round(rows["per_matrix_float32"] / (rows["per_matrix_float32"] + step), 3)}))


if __name__ == "__main__":
    main()
