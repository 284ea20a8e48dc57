"""The guide's claim, measured: a transformer against LSTM, GRU and tanh-RNN language models of
about the same size, trained for the same wall-clock budget on the same corpus and tokenizer.

    python bench/architectures.py [--budget 120] [--work runs/bench-architectures] [--plot PNG]

Corpus and tokenizer: the quickstart's docs source (Python's own docs, byte-level BPE 4096), prepared once in
--work. The transformer trains with the quickstart's recipe, the recurrent models with
recipes/lstm.toml's (cell swapped), each widened or narrowed to the transformer's parameter count.
Every model is scored on the same validation text: bits per byte over 256-token windows (recurrent
models start each window from a zero state, as the transformer starts without context), and the
validation loss at each position of the window, in 8 buckets of 32 positions: does the loss keep
falling with more context?

Prints one JSON line per family and, last, {family: {"bits_per_byte", "tokens_per_s", "params",
"loss_by_position"}}.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
WINDOW = 256
BUCKETS = 8


def prepare(work: Path):
    from lmforge import stages
    from lmforge.recipe import load_recipe
    from lmforge.rundir import RunDir
    recipe = load_recipe(REPO / "recipes" / "quickstart.toml")
    recipe.data.sources = [s for s in recipe.data.sources if s.kind == "python_docs"]   # the docs only, as measured
    run = RunDir.create(work, recipe)
    stages.prepare(run, recipe)
    return run


def family_recipes(budget: float) -> dict:
    """(model config, train config) per family: the quickstart's transformer and recipes/lstm.toml's
    recurrent recipe with each cell, widened to about the transformer's parameter count."""
    from lmforge.recipe import load_recipe
    quick = load_recipe(REPO / "recipes" / "quickstart.toml", [f"train.time_budget_s={budget}"])
    out = {"transformer": (quick.model.resolved(), quick.train)}
    target = quick.model.resolved().num_params(4096)
    for cell in ("lstm", "gru", "rnn"):
        r = load_recipe(REPO / "recipes" / "lstm.toml", [f"model.arch={cell}", f"train.time_budget_s={budget}"])
        widths = range(64, 1025, 32)
        d = min(widths, key=lambda w: abs(replace(r.model, d_model=w).num_params(4096) - target))
        out[cell] = (replace(r.model.resolved(), d_model=d), r.train)
    return out


@torch.no_grad()
def loss_by_position(model, tokens: np.ndarray, windows: int = 128) -> list[float]:
    from lmforge.train.batches import fixed_windows
    total = torch.zeros(WINDOW)
    n = 0
    for batch in fixed_windows(tokens, WINDOW, windows, 16, seed=1):
        logits = model(batch["input_ids"]).float()
        total += F.cross_entropy(logits.transpose(1, 2), batch["labels"], reduction="none").sum(0)
        n += batch["input_ids"].shape[0]
    per = (total / n).view(BUCKETS, -1).mean(1)
    return [round(float(x), 4) for x in per]


def measure(name: str, mcfg, tcfg, run, tokenizer, val_limit: int) -> dict:
    from lmforge.eval.likelihood import score_token_stream
    from lmforge.models.registry import build_model
    from lmforge.tokenizer.shards import read_shards
    from lmforge.train.loop import Trainer
    from lmforge.train.objectives import build_objective
    train_tokens, val_tokens, meta = read_shards(run.tokens)
    mcfg = replace(mcfg, vocab_size=meta["vocab_size"], max_seq_len=max(mcfg.max_seq_len, WINDOW)
                   if mcfg.arch != "llama" else mcfg.max_seq_len)
    torch.manual_seed(0)
    model = build_model(mcfg)
    seq_len = tcfg.seq_len or (mcfg.max_seq_len if mcfg.arch == "llama" else 128)
    objective = build_objective("causal_lm", model, tokenizer, tcfg)
    batches = objective.train_batches(train_tokens, seq_len, tcfg.batch_size, 0)
    val = objective.val_batches(val_tokens, seq_len, 64, 16, seed=0)
    tcfg = replace(tcfg, eval_every=0, checkpoint_every=0, keep_best=False)
    trainer = Trainer(model, tcfg, batches, val, seed=0, objective=objective)
    state = trainer.fit()
    model.eval()
    scored = val_tokens[:val_limit]
    nll, count = score_token_stream(model, scored, window=WINDOW, batch_size=16)
    val_bytes = meta["val_bytes"] * len(scored) / len(val_tokens)
    return {"family": name, "arch": mcfg.arch, "d_model": mcfg.d_model, "n_layer": mcfg.n_layer,
            "params": sum(p.numel() for p in model.parameters()),
            "steps": state.step, "tokens_per_s": round(state.tokens / state.train_seconds, 1),
            "bits_per_byte": round(nll / math.log(2) / val_bytes, 4),
            "loss_by_position": loss_by_position(model, val_tokens)}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    centers = [(i + 0.5) * WINDOW / BUCKETS for i in range(BUCKETS)]
    for name, r in results.items():
        ax.plot(centers, r["loss_by_position"], "o-", ms=3,
                label=f"{name} ({r['params'] / 1e6:.1f}M, {r['bits_per_byte']:.3f} bits/byte)")
    ax.set_xlabel("position in the 256-token window (tokens of context)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per family")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench-architectures")
    ap.add_argument("--val-tokens", type=int, default=100_000)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--only", action="append", help="families to run (default: all)")
    args = ap.parse_args()
    from lmforge.tokenizer.load import load_tokenizer
    run = prepare(args.work)
    tokenizer = load_tokenizer(run.tokenizer)
    results = {}
    for name, (mcfg, tcfg) in family_recipes(args.budget).items():
        if args.only and name not in args.only:
            continue
        r = measure(name, mcfg, tcfg, run, tokenizer, args.val_tokens)
        r["cpu"] = cpu_name()
        print(json.dumps(r), flush=True)
        results[name] = {k: r[k] for k in ("bits_per_byte", "tokens_per_s", "params", "loss_by_position")}
    if args.plot:
        plot(results, args.plot)
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
