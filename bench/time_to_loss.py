"""Wall seconds to nanoGPT's CPU validation loss (1.874) on character-level tiny Shakespeare,
for nanoGPT's CPU recipe (the baseline, re-implemented with lmforge's gpt2 preset) and lmforge's
recipe, in the same invocation. Training seconds exclude validation, for both alike.

lmforge's recipe is trained on a wall-clock budget and sizes its model for that budget
(`charlm.SIZE_FOR_BUDGET`), so it runs once per question asked: a `--sprint`-second run for the
time to the target, a `--budget`-second run for the loss at that time, and with `--long` a
600-second run. Its `seconds_to_target` is the earliest of those runs to reach the target.

    python bench/time_to_loss.py [--data PATH] [--sprint 20] [--budget 100] [--baseline-cap 600] [--long]

Prints one JSON line per validation and, last, {"baseline": {...}, "lmforge": {...}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from charlm import BASELINE, DEFAULT_DATA, build_trainer, lmforge_for_budget, load_chars  # noqa: E402

TARGET = 1.874


def run(name: str, recipe: dict, budget: float, data, eval_every: int) -> dict:
    train, val, vocab = data
    history = []

    def log(rec):
        if rec["kind"] == "val":
            history.append((rec["train_seconds"], rec["val_loss"]))
            print(json.dumps({"recipe": name, "budget_s": budget, **rec}), flush=True)

    trainer = build_trainer(recipe, train, val, vocab, log=log, time_budget_s=budget,
                            eval_every=eval_every, checkpoint_every=0, keep_best=False, log_every=10_000)
    trainer.fit(max_seconds=budget)   # a step-counted recipe (the baseline) also stops at the budget
    reached = next((t for t, loss in history if loss <= TARGET), None)
    model = recipe["model"].resolved()
    return {"seconds_to_target": reached, "final_loss": history[-1][1], "train_seconds": history[-1][0],
            "steps": trainer.state.step, "model": f"{model.n_layer}x{model.d_model}", "history": history}


def loss_at(history: list, seconds: float) -> float:
    """The last validation loss measured within `seconds` of training."""
    return [loss for t, loss in history if t <= seconds + 1e-6][-1]


def summary(run_: dict, budget: float) -> dict:
    return {"seconds_to_target": run_["seconds_to_target"], f"loss_at_{budget:.0f}s": loss_at(run_["history"], budget),
            "final_loss": run_["final_loss"], "steps": run_["steps"], "model": run_["model"]}


def earliest(runs: list[dict]) -> float | None:
    times = [r["seconds_to_target"] for r in runs if r["seconds_to_target"] is not None]
    return min(times) if times else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--sprint", type=float, default=20.0, help="lmforge's budget for the time-to-target run (s)")
    ap.add_argument("--budget", type=float, default=100.0, help="lmforge's budget for the loss-at-time run (s)")
    ap.add_argument("--baseline-cap", type=float, default=600.0, help="longest the baseline may train (s)")
    ap.add_argument("--long", action="store_true", help="also train each recipe for 600 s")
    ap.add_argument("--only", choices=["baseline", "lmforge"], action="append")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"data not found: {args.data} (pass --data PATH to tinyshakespeare.txt)")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_chars(Path(args.data))
    out = {}
    if "baseline" in (args.only or ["baseline"]):
        # Its schedule is counted in steps (2000): it runs to its own end (capped at --baseline-cap
        # seconds), so its time to the target is known even when it needs more than --budget.
        base = run("baseline", BASELINE, args.baseline_cap, data, args.eval_every)
        out["baseline"] = summary(base, args.budget)
        if args.long:   # its 2000 steps end well within 600 s on a CPU like this one
            out["baseline"]["loss_at_600s"] = loss_at(base["history"], 600.0)
    if "lmforge" in (args.only or ["lmforge"]):
        # short runs validate more often, so the time to the target is resolved to about a second
        sprint = run("lmforge", lmforge_for_budget(args.sprint), args.sprint, data, max(args.eval_every // 2, 1))
        main_run = run("lmforge", lmforge_for_budget(args.budget), args.budget, data, args.eval_every)
        runs = [sprint, main_run]
        out["lmforge"] = {**summary(main_run, args.budget), "sprint": summary(sprint, args.sprint)}
        if args.long:
            runs.append(run("lmforge", lmforge_for_budget(600.0), 600.0, data, args.eval_every * 4))
            out["lmforge"]["loss_at_600s"] = runs[-1]["final_loss"]
            out["lmforge"]["model_600s"] = runs[-1]["model"]
        out["lmforge"]["seconds_to_target"] = earliest(runs)
    if "baseline" in out and "lmforge" in out:
        b, l = out["baseline"]["seconds_to_target"], out["lmforge"]["seconds_to_target"]
        out["speedup_to_target"] = round(b / l, 2) if b and l else None
    print(json.dumps({"target_loss": TARGET, "threads": torch.get_num_threads(), **out}))


if __name__ == "__main__":
    main()
