"""model_card.md, written from what the run directory really holds (Mitchell et al. 2019 sections)."""

from __future__ import annotations

import json

from lmforge import atomic
from lmforge.models.io import config_from_dict
from lmforge.models.registry import get_family
from lmforge.recipe import Recipe
from lmforge.report.tasks import TASK_HEADER, task_rows
from lmforge.rundir import RunDir


def _load(path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _table(rows: list[tuple[str, object]]) -> list[str]:
    return ["| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows), ""]


def _results(res: dict, recipe: Recipe) -> list[str]:
    """The run's own evaluation (eval/pretrain.json or its fine-tuning task's file) as a table and a verdict."""
    base = recipe.model.init_from
    if not res:
        return ["Not evaluated yet (`lmforge eval`)."]
    if "mlm_accuracy" in res:
        verdict = "above" if res["mlm_accuracy"] > res["unigram_mlm_accuracy"] else "NOT above"
        return _table([("masked-LM loss (nats/masked token)", res["mlm_loss"]),
                       ("masked-LM accuracy", res["mlm_accuracy"]),
                       ("unigram baseline accuracy (same positions)", res["unigram_mlm_accuracy"]),
                       ("pseudo-log-likelihood (nats/token)", res["pll_per_token"]),
                       ("pseudo-perplexity", res["pseudo_perplexity"])]) + \
            [f"The model's masked-token accuracy is {verdict} the unigram baseline's."]
    if "sft_loss_after" in res:
        return _table([("held-out assistant-token loss, base model (nats/token)", res["sft_loss_before"]),
                       ("held-out assistant-token loss, fine-tuned (nats/token)", res["sft_loss_after"]),
                       ("held-out conversations", res["test_conversations"])]) + \
            ([f"Fine-tuned from {base}."] if base else [])
    if "reward_accuracy_after" in res:
        return _table([("held-out reward accuracy before (policy = reference)", res["reward_accuracy_before"]),
                       ("held-out reward accuracy after", res["reward_accuracy_after"]),
                       ("held-out reward margin after", res["reward_margin_after"]),
                       ("held-out pairs", res["test_pairs"])]) + \
            ([f"Preference-tuned (DPO) from {base}."] if base else [])
    if "macro_f1" in res:
        zs = res.get("zero_shot_accuracy")
        return _table([("test accuracy", f"{res['accuracy']} ± {res['accuracy_stderr']}"),
                       ("test macro-F1", res["macro_f1"]),
                       ("majority-class accuracy (same test set)", res["majority_accuracy"]),
                       ("base model, zero-shot accuracy", "not measured" if zs is None else zs),
                       ("test examples", res["test_examples"])]) + \
            [f"Labels: {', '.join(res['confusion_matrix']['labels'])}."] + \
            ([f"Fine-tuned for classification from {base}."] if base else [])
    verdict = "below" if res["bits_per_byte"] < res["gzip_bits_per_byte"] else "NOT below"
    return _table([("validation loss (nats/token)", res["val_loss"]), ("token perplexity", res["token_perplexity"]),
                   ("bits per byte", res["bits_per_byte"]),
                   ("gzip -9 bits per byte (same text)", res["gzip_bits_per_byte"]),
                   ("xz -9 bits per byte (same text)", res["xz_bits_per_byte"])]) + \
        [f"The model's bits per byte is {verdict} gzip's on the same text."]


def write_model_card(run: RunDir, recipe: Recipe) -> None:
    manifest = run.manifest()
    stages = manifest.get("stages", {})
    train = stages.get("train", {})
    res = _load(run.own_result)
    meta = _load(run.token_files[2])
    stats = _load(run.data / "stats.json")
    mcfg_path = next(iter(sorted(run.checkpoints.glob("*/model_config.json"))), None) if run.checkpoints.exists() else None
    mcfg = config_from_dict(_load(mcfg_path)) if mcfg_path else recipe.model.resolved()
    sources = ", ".join(f"{s.name or s.kind}{' (' + s.path + ')' if s.path else ''}" for s in recipe.data.sources)
    licences = sorted({s.licence for s in recipe.data.sources if s.licence}) or ["not declared in the recipe"]

    lines = [f"# Model card: {recipe.name}", "",
             "## Model details",
             f"- Architecture: {get_family(mcfg.arch).describe(mcfg)}.",
             f"- Objective: {recipe.train.objective}.",
             f"- Parameters: {train.get('parameters', 0):,}.",
             f"- Tokenizer: {recipe.tokenizer.kind}, {meta.get('vocab_size', '?')} tokens.",
             f"- Trained with lmforge {manifest.get('versions', {}).get('lmforge', '?')}, torch "
             f"{manifest.get('versions', {}).get('torch', '?')}, seed {recipe.seed}.", "",
             "## Training data",
             f"- Sources: {sources}; licences: {', '.join(licences)}.",
             f"- {stats.get('output', {}).get('documents', '?')} documents, "
             f"{stats.get('output', {}).get('bytes', 0) / 1e6:.2f} MB after cleaning "
             f"(steps: {', '.join(recipe.data.steps)}). See data/data_card.md.",
             f"- {meta.get('train_tokens', 0):,} training tokens, {meta.get('val_tokens', 0):,} validation "
             f"tokens (held out by document).", "",
             "## Training",
             f"- {train.get('steps', '?')} steps, {train.get('tokens', 0):,} tokens, "
             f"{train.get('seconds', 0):.0f} s wall time on {train.get('world_size', 1)} process(es); "
             f"optimizer {recipe.train.optimizer}, schedule {recipe.train.schedule}, "
             f"autocast {recipe.train.dtype}.", "",
             "## Evaluation (held-out data)"]
    lines += _results(res, recipe)
    rows = task_rows(run)
    if rows:
        lines += ["", "## Evaluation (tasks, `lmforge eval --task`)", "| " + " | ".join(TASK_HEADER) + " |",
                  "|" + "---|" * len(TASK_HEADER)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    lines += ["", "## Intended use and limitations",
              "- A small model trained from scratch for learning and experimentation. It produces fluent-looking "
              "but often wrong text; do not rely on it for facts, advice or decisions.",
              "- It reflects its training data only (its sources, language and era); biases and gaps in that "
              "data carry over. Personal data patterns (e-mails, phone numbers, IP addresses) were "
              "redacted when the `pii` step ran, but redaction is pattern-based and not exhaustive.",
              "- Metrics are on held-out documents from the same sources; they say little about other text.", ""]
    atomic.write_text(run.model_card, "\n".join(lines))
