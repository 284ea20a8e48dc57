"""Running tasks on models and comparing them: the Python API behind `lmforge eval`.

    results = run_tasks(["runs/mine", "hf/some-model"], ["piqa", "sst2"], limit=200)
    print(format_table(results))

Each model is loaded once and given every task; models load one after another so
only one is in memory. A result is written as JSON (metrics, settings, counts)
plus a JSONL file with every prompt and answer, so any number can be traced back
to the examples behind it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lmforge import atomic
from lmforge.eval.backends import LmforgeLM, load_lm
from lmforge.errors import UserError
from lmforge.eval.datasets import read_aligned, read_fewshot_rows, read_rows
from lmforge.eval.generation import evaluate_generation
from lmforge.eval.lm import EvalLM
from lmforge.eval.multiple_choice import evaluate_multiple_choice
from lmforge.eval.perplexity import evaluate_perplexity
from lmforge.eval.prompts import build_contexts, make_example, render
from lmforge.eval.retrieval import evaluate_retrieval
from lmforge.eval.tasks import Task, load_task
from lmforge.governance.pairs import load_pairs


def evaluate_minimal_pairs(lm: EvalLM, pairs: list, seed: int) -> dict:
    """CrowS-Pairs-style pairs, scored as lm-evaluation-harness's crows_pairs task scores them."""
    from lmforge.governance.pairs import causal_scores, summarize
    more, less = causal_scores(lm, pairs)
    summary = summarize(pairs, more, less, seed=seed)
    return {"n": len(pairs),
            "metrics": {"pct_stereotype": {"value": summary["pct_stereotype"], "ci95": summary["ci95"]},
                        "likelihood_diff": {"value": summary["likelihood_diff"]}},
            "by_type": summary.get("by_type", {}),
            "samples": [{"sent_more": p.more, "sent_less": p.less, "bias_type": p.group,
                         "ll_more": round(float(a), 4), "ll_less": round(float(b), 4)}
                        for p, a, b in zip(pairs, more, less)]}


def embedding_function(lm: EvalLM):
    """texts -> unit vectors with the model's sentence features (infer/embedder.py); texts longer
    than the context keep their start."""
    from lmforge.infer.embedder import Embedder
    if not isinstance(lm, LmforgeLM):
        raise UserError(f"{lm.name}: retrieval tasks embed with an lmforge run's model; "
                        "this is a Hugging Face model")
    embedder = Embedder(lm.model, lm.tokenizer)
    return lambda texts: embedder.embed([ids[:embedder.context] for ids in embedder.encode(texts)])


def evaluate_task(lm: EvalLM, task: Task, *, limit: int | None = None, seed: int = 0,
                  num_fewshot: int | None = None, chat: bool = False) -> dict:
    """Score one model on one task; returns metrics, settings and per-example samples.
    chat: each prompt (with its shots) is sent as one user message in the model's chat template."""
    if task.kind != "retrieval" and not lm.generative:
        raise UserError(f"{lm.name}: task {task.name} scores next-token likelihoods, and a model of arch "
                        f"'{lm.model.cfg.arch}' has none (retrieval tasks take any run; `lmforge eval RUN` "
                        f"measures the model itself)")
    shots = task.prompt.num_fewshot if num_fewshot is None or num_fewshot < 0 else num_fewshot
    limit = limit or None   # 0 means no limit, as in the recipe's [eval] limit
    started = time.perf_counter()
    if task.kind == "minimal_pairs":
        out = evaluate_minimal_pairs(lm, load_pairs(str(task.resolve(task.data.path)))[:limit], seed)
        return {"task": task.name, "kind": task.kind, "model": lm.name, "n": out.pop("n"), "num_fewshot": 0,
                "chat": False, "limit": limit, "seed": seed, "seconds": round(time.perf_counter() - started, 2), **out}
    if task.kind == "retrieval":
        out = evaluate_retrieval(embedding_function(lm), read_aligned(task, limit), task.data.language,
                                 center=task.metrics.center_embeddings)
        return {"task": task.name, "kind": task.kind, "model": lm.name, "n": out.pop("n"), "num_fewshot": 0,
                "chat": False, "limit": limit, "seed": seed, "seconds": round(time.perf_counter() - started, 2), **out}
    rows = read_rows(task)
    if task.kind == "perplexity":
        out = evaluate_perplexity(lm, [render(task.prompt.text, r) for r in rows[:limit]])
        n = out["counts"]["documents"]
    else:
        fewshot_rows = read_fewshot_rows(task) if shots else None
        # without a few-shot file the shots come from the whole evaluation file
        needed = rows if shots and fewshot_rows is None else rows[:limit]
        examples = [make_example(task, r) for r in needed]
        pool = examples if fewshot_rows is None else [make_example(task, r) for r in fewshot_rows]
        examples = examples[:limit]
        contexts = build_contexts(task, examples, pool, shots, seed, fewshot_rows is None)
        if chat:
            contexts = [lm.chat_prompt(c) for c in contexts]
        if task.kind == "multiple_choice":
            out = evaluate_multiple_choice(lm, task, examples, contexts)
        else:
            out = evaluate_generation(lm, task, examples, contexts, seed)
        n = len(examples)
    return {"task": task.name, "kind": task.kind, "model": lm.name, "n": n, "num_fewshot": shots, "chat": chat,
            "limit": limit, "seed": seed, "seconds": round(time.perf_counter() - started, 2), **out}


def model_labels(paths: list[Path]) -> list[str]:
    """Short unique names: the run or model folder, or run/step-N for a checkpoint."""
    labels, seen = [], {}
    for p in paths:
        is_checkpoint = p.name == "best" or p.name.startswith("step-")
        name = f"{p.parents[1].name}/{p.name}" if is_checkpoint else p.name
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return labels


def _write(result: dict, folder: Path) -> None:
    samples = result.pop("samples", [])
    lines = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    atomic.write_text(folder / f"{result['task']}.samples.jsonl", lines)
    result["samples_file"] = str(folder / f"{result['task']}.samples.jsonl")
    atomic.write_json(folder / f"{result['task']}.json", result)


def run_tasks(model_paths: list[str | Path], tasks: list[str], *, limit: int | None = None,
              seed: int = 0, out_dir: Path | None = None, num_fewshot: int | None = None,
              batch_size: int = 8, chat: bool = False) -> dict:
    """Evaluate every model on every task.

    Results are written to out_dir/<model>/<task>.json when out_dir is given; otherwise
    an lmforge run keeps them in its own eval/ folder and a Hugging Face model's are
    only returned. Returns {"models": [...], "tasks": [...], "results": {model: {task: result}}}."""
    loaded_tasks = [load_task(t) for t in tasks]   # a typo fails before any model loads
    paths = [Path(p) for p in model_paths]
    labels = model_labels(paths)
    results: dict[str, dict] = {}
    for path, label in zip(paths, labels):
        lm = load_lm(path, batch_size=batch_size)
        lm.name = label
        folder = Path(out_dir) / label if out_dir else (
            lm.run_dir / "eval" if isinstance(lm, LmforgeLM) else None)
        results[label] = {}
        for task in loaded_tasks:
            result = evaluate_task(lm, task, limit=limit, seed=seed, num_fewshot=num_fewshot, chat=chat)
            if folder is not None:
                _write(result, folder)
            else:
                result.pop("samples", None)
            results[label][task.name] = result
        lm.close()
    return {"models": labels, "tasks": [t.name for t in loaded_tasks], "results": results}


def format_metric(entry: dict) -> str:
    v = entry["value"]
    fmt = "{:.4f}" if abs(v) < 10 else "{:.2f}"
    if entry.get("stderr") is not None and entry["stderr"] == entry["stderr"]:
        return fmt.format(v) + " ± " + fmt.format(entry["stderr"])
    if "ci95" in entry:
        lo, hi = entry["ci95"]
        return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]"
    return fmt.format(v)


def format_table(results: dict) -> str:
    """One plain-text table: a row per task metric, a column per model.

    Cells show value ± standard error, or value [95% interval] where the metric has one."""
    models = results["models"]
    rows = [["task", "metric", "n", *models]]
    for task in results["tasks"]:
        first = next(results["results"][m][task] for m in models)
        for metric in first["metrics"]:
            cells = []
            for m in models:
                entry = results["results"][m].get(task, {}).get("metrics", {}).get(metric)
                cells.append(format_metric(entry) if entry else "-")
            rows.append([task, metric, str(first["n"]), *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    signatures = {e["signature"] for m in models for t in results["tasks"]
                  for e in results["results"][m].get(t, {}).get("metrics", {}).values() if "signature" in e}
    return "\n".join(lines + [f"sacrebleu: {s}" for s in sorted(signatures)])
