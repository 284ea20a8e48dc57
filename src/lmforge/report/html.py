"""report.html: one self-contained page (inline PNGs, no external assets) per run."""

from __future__ import annotations

import html
import json

from lmforge import atomic
from lmforge.recipe import Recipe, to_toml
from lmforge.report import plots
from lmforge.eval.languages import LANGUAGE_HEADER, language_rows, language_summary
from lmforge.report.tasks import TASK_HEADER, task_rows
from lmforge.rundir import RunDir


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str | None, alt: str) -> str:
    return f'<img alt="{alt}" src="{uri}">' if uri else f"<p><em>no {alt} yet</em></p>"


def write_report(run: RunDir, recipe: Recipe) -> None:
    manifest = run.manifest()
    stages = manifest.get("stages", {})
    parts = [f"<h1>lmforge run: {html.escape(recipe.name)}</h1>",
             f"<p>{html.escape(str(run.path))} · lmforge {manifest.get('versions', {}).get('lmforge', '?')}"
             f" · torch {manifest.get('versions', {}).get('torch', '?')}"
             f" · git {manifest.get('git_sha') or 'n/a'}</p>"]

    parts.append("<h2>Stages</h2>")
    parts.append(_table(["stage", "seconds", "finished"],
                        [[k, v.get("seconds"), v.get("finished")] for k, v in stages.items()]))

    pretrain = run.own_result
    if pretrain.exists():
        res = json.loads(pretrain.read_text())
        parts.append("<h2>Results</h2>")
        keys = ["val_loss", "token_perplexity", "bits_per_byte", "gzip_bits_per_byte", "xz_bits_per_byte",
                "mlm_loss", "mlm_accuracy", "unigram_mlm_accuracy", "pll_per_token", "pseudo_perplexity",
                "sft_loss_before", "sft_loss_after", "test_conversations", "reward_accuracy_before",
                "reward_accuracy_after", "reward_margin_after", "chosen_logprob_after", "rejected_logprob_after",
                "test_pairs", "accuracy", "accuracy_stderr", "macro_f1", "majority_accuracy", "zero_shot_accuracy",
                "test_examples"]
        parts.append(_table(["metric", "value"], [[k, res[k]] for k in keys if k in res]))
        if "image_size" in res:     # a clip run (vision/task.py)
            from lmforge.vision.tables import clip_tables
            for title, header, rows in clip_tables(res):
                parts.append(f"<h3>{html.escape(title)}</h3>")
                parts.append(_table(header, rows))
            picture = run.path / res.get("retrieval_picture", "-")
            if picture.is_file():
                parts.append("<h3>Nearest test images for class prompts (green: of that class)</h3>")
                parts.append(_img(plots.png_uri(picture.read_bytes()), "retrieval grid"))
        if "languages" in res:
            parts.append("<h3>By language</h3>")
            parts.append(_table(LANGUAGE_HEADER, language_rows(res["languages"])))
            parts.append(f"<p>{html.escape(language_summary(res['languages']))}</p>")
        if "confusion_matrix" in res:
            cm = res["confusion_matrix"]
            parts.append("<h3>Confusion matrix (rows: gold, columns: predicted)</h3>")
            parts.append(_table(["gold \\ predicted", *cm["labels"]],
                                [[lab, *row] for lab, row in zip(cm["labels"], cm["counts"])]))
        samples = res.get("samples") or []
        if samples and "tuned" in samples[0]:      # fine-tuning: held-out prompts, base and tuned answers
            parts.append("<h3>Held-out prompts: base model and fine-tuned model</h3>")
            parts.append(_table(["prompt", "base", "fine-tuned"],
                                [[s["prompt"], s.get("base", ""), s["tuned"]] for s in samples]))
        elif samples:
            parts.append("<h3>Samples</h3>")
            for s in samples:
                parts.append(f"<pre><b>{html.escape(s['prompt'])}</b>{html.escape(s['completion'])}</pre>")
    rows = task_rows(run)
    if rows:
        parts.append("<h2>Evaluations</h2>")
        parts.append(_table(TASK_HEADER, rows))

    governance = run.eval_result("governance")
    if governance.exists():
        result = json.loads(governance.read_text())
        parts.append(f"<h2>Governance: release gate {'passed' if result['passed'] else 'FAILED'}</h2>")
        parts.append(_table(["check", "measures", "value", "threshold", "status"],
                            [[r["check"], r["measures"], r["value"], "-" if r["threshold"] is None else r["threshold"],
                              r["status"]] for r in result["checks"]]))
        parts.append(_img(plots.governance(result), "governance plots"))

    parts.append("<h2>Training</h2>")
    metrics = run.read_metrics()
    parts.append(_img(plots.training_curves(metrics), "training curves"))
    if any(m.get("kind") == "clip_eval" for m in metrics):
        parts.append(_img(plots.zero_shot_curves(metrics), "zero-shot curves"))
    samples = [m for m in metrics if m.get("kind") == "sample"]
    if samples:
        parts.append("<h3>Samples from the model at each validation</h3>")
        parts.append(_table(["step", "prompt", "completion"],
                            [[m["step"], m["prompt"], m["completion"]] for m in samples]))

    stats_path = run.data / "stats.json"
    if stats_path.exists():
        from lmforge.data.datacard import length_histogram
        stats = json.loads(stats_path.read_text())
        parts.append("<h2>Data</h2>")
        parts.append(_table(["step", "docs in", "docs out", "removed", "MB in", "MB out"],
                            [[s["name"], s["docs_in"], s["docs_out"], s["removed"],
                              round(s["bytes_in"] / 1e6, 3), round(s["bytes_out"] / 1e6, 3)]
                             for s in stats.get("steps", [])]))
        parts.append(_img(plots.length_histogram(*length_histogram(stats)), "length histogram"))

    parts.append("<h2>Recipe</h2>")
    parts.append(f"<pre>{html.escape(to_toml(recipe))}</pre>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
             "text-align:left}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}"
             "img{max-width:100%}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>lmforge · {html.escape(recipe.name)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic.write_text(run.report, page)
