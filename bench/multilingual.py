"""What temperature sampling buys a multilingual encoder, and whether it aligns its languages.

    python bench/multilingual.py                 # ~25 minutes on 2 cores (250 steps a run)
    python bench/multilingual.py --steps 100     # a quicker look

Trains recipes/multilingual.toml three times for the same number of steps (so the machine's
speed does not change the comparison): with the recipe's alpha, with alpha = 1 (languages in
proportion to their data) and on its English sources only. Prints one JSON line per language
and run (bytes per token, bits per byte, shares of the data and of the training windows), one
per run and retrieval metric (Multi30K, tasks/multi30k-retrieval.toml), with raw and with
per-language centred embeddings, also for an untrained encoder of the same shape (what shared
tokens alone give), and a summary line last. `--reuse` keeps finished runs and redoes retrieval.
Needs ../shared/data (ud_sentences, multi30k).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from architectures import cpu_name     # bench/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "multilingual.toml"
TASK = "multi30k-retrieval"


def lmforge(*args: str) -> None:
    # its messages go to stderr: stdout is this benchmark's JSON
    subprocess.run([sys.executable, "-m", "lmforge.cli", *args], check=True, cwd=ROOT, stdout=sys.stderr,
                   env={**os.environ, "LMFORGE_NO_PROGRESS": "1"})


def english_only_recipe(out: Path) -> Path:
    from lmforge.recipe import load_recipe, to_toml
    recipe = load_recipe(RECIPE)
    english = [s for s in recipe.data.sources if s.language == "en"]
    recipe = dataclasses.replace(recipe, name="multilingual-english-only",
                                 data=dataclasses.replace(recipe.data, sources=english, language_alpha=1.0))
    path = out / "english-only.toml"
    path.write_text(to_toml(recipe))
    return path


def untrained_copy(trained: Path, out: Path) -> Path:
    """An encoder of the trained run's shape and tokenizer, at its initial weights."""
    import shutil
    from lmforge.models.io import find_weights, read_model_config, save_weights
    from lmforge.models.registry import build_model
    from lmforge.recipe import load_recipe
    cfg = read_model_config(find_weights(trained))
    torch.manual_seed(load_recipe(trained / "recipe.toml").seed)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(build_model(cfg).state_dict(), cfg, out)
    shutil.copytree(trained / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-multilingual")
    ap.add_argument("--reuse", action="store_true", help="keep runs already evaluated in --out (retrieval only)")
    args = ap.parse_args()
    from lmforge.eval.backends import LmforgeLM
    from lmforge.eval.datasets import read_aligned
    from lmforge.eval.harness import embedding_function
    from lmforge.eval.retrieval import evaluate_retrieval
    from lmforge.eval.tasks import load_task
    from lmforge.recipe import load_recipe

    alpha = load_recipe(RECIPE).data.language_alpha
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {f"alpha={alpha:g}": (RECIPE, alpha), "alpha=1": (RECIPE, 1.0),
            "english-only": (english_only_recipe(args.out), 1.0)}
    tables = {}
    for label, (recipe, a) in runs.items():
        run = args.out / label
        if not (args.reuse and (run / "eval" / "pretrain.json").is_file()):
            lmforge("run", str(recipe), "--out", str(run), "--force", "--set", f"data.language_alpha={a}",
                    "--set", f"train.max_steps={args.steps}", "--set", "train.time_budget_s=0")
        table = json.loads((run / "eval" / "pretrain.json").read_text()).get("languages")
        tables[label] = table
        for lang, row in (table or {}).get("by_language", {}).items():
            print(json.dumps({"run": label, "language": lang, **row}), flush=True)
    models = {label: args.out / label for label in runs}
    models["untrained"] = untrained_copy(args.out / f"alpha={alpha:g}", args.out / "untrained")
    task = load_task(TASK)
    texts = read_aligned(task)
    recall = {}
    for label, path in models.items():
        embed = embedding_function(LmforgeLM(path))
        cache = {}       # each language embedded once, scored raw and centred
        for center in (False, True):
            metrics = evaluate_retrieval(lambda lines: cache.setdefault(id(lines), embed(lines)), texts,
                                         task.data.language, center=center)["metrics"]
            for name, entry in metrics.items():
                print(json.dumps({"run": label, "task": TASK, "centered": center, "metric": name,
                                  "value": entry["value"]}), flush=True)
            at1 = [e["value"] for n, e in metrics.items() if n.endswith("recall@1") and not n.startswith("chance")]
            recall[f"{label}{' centered' if center else ''}"] = round(sum(at1) / len(at1), 4)
    balanced, proportional = tables[f"alpha={alpha:g}"]["by_language"], tables["alpha=1"]["by_language"]
    print(json.dumps({
        "summary": "multilingual", "cpu": cpu_name(), "steps": args.steps, "alpha": alpha,
        "bits_per_byte_change": {lang: round(balanced[lang]["bits_per_byte"] - proportional[lang]["bits_per_byte"], 4)
                                 for lang in balanced if "bits_per_byte" in balanced[lang]},
        "spread": {label: t["bits_per_byte_spread"] for label, t in tables.items() if t},
        "mean_recall_at_1": recall, "chance_recall_at_1": 0.001}))


if __name__ == "__main__":
    main()
