"""model_card.md, written from what the run directory really holds (Mitchell et al. 2019 sections),
opening with Hugging Face's YAML metadata (license, language, datasets, model-index with the
run's real results) so the card works as a Hub README as it is."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.models.io import config_from_dict
from lmforge.models.registry import get_family
from lmforge.recipe import Recipe
from lmforge.eval.languages import LANGUAGE_HEADER, language_rows, language_summary
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
    if "image_size" in res:      # a clip run (vision/task.py)
        from lmforge.vision.tables import markdown_tables
        return markdown_tables(res) + [f"Images: data.images.source = {res['source']}, at {res['image_size']} pixels."]
    verdict = "below" if res["bits_per_byte"] < res["gzip_bits_per_byte"] else "NOT below"
    return _table([("validation loss (nats/token)", res["val_loss"]), ("token perplexity", res["token_perplexity"]),
                   ("bits per byte", res["bits_per_byte"]),
                   ("gzip -9 bits per byte (same text)", res["gzip_bits_per_byte"]),
                   ("xz -9 bits per byte (same text)", res["xz_bits_per_byte"])]) + \
        [f"The model's bits per byte is {verdict} gzip's on the same text."]


# licences the Hub knows by these ids; any other is "other" with its name
HUB_LICENCES = {"apache-2.0", "mit", "bsd-3-clause", "bsd-2-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc0-1.0",
                "gpl-3.0", "lgpl-3.0", "mpl-2.0", "openrail", "llama2", "llama3"}
PIPELINES = {"causal_lm": "text-generation", "sft": "text-generation", "dpo": "text-generation",
             "masked_lm": "fill-mask", "classify": "text-classification",
             "contrastive": "zero-shot-image-classification"}
# eval result key -> (model-index metric type, its name)
INDEXED = {"bits_per_byte": "bits per byte", "val_loss": "validation loss (nats/token)",
           "token_perplexity": "perplexity", "mlm_accuracy": "masked-LM accuracy", "accuracy": "accuracy",
           "macro_f1": "macro-F1", "sft_loss_after": "held-out assistant-token loss",
           "reward_accuracy_after": "reward accuracy"}


def _front_matter(recipe: Recipe, res: dict, governance: dict, licences: list[str]) -> list[str]:
    licence = licences[0].lower() if len(licences) == 1 else "other"
    meta = {"license": licence if licence in HUB_LICENCES else "other"}
    if meta["license"] == "other":
        meta["license_name"] = ", ".join(licences)
    meta["language"] = sorted(set(recipe.data.langid.allow)) if "langid" in recipe.data.steps else ["en"]
    meta["library_name"] = "lmforge"
    meta["pipeline_tag"] = PIPELINES.get(recipe.train.objective, "text-generation")
    meta["tags"] = ["lmforge", recipe.model.arch, recipe.train.objective]
    meta["datasets"] = [recipe.data.images.source] if recipe.train.objective == "contrastive" else \
        [s.name or s.kind for s in recipe.data.sources]
    metrics = [{"type": key, "name": name, "value": res[key]} for key, name in INDEXED.items()
               if isinstance(res.get(key), (int, float))]
    results = []
    if metrics:
        results.append({"task": {"type": meta["pipeline_tag"]},
                        "dataset": {"name": "held-out split of the training sources", "type": recipe.name},
                        "metrics": metrics})
    pairs = governance.get("bias", {}).get("minimal_pairs")
    if pairs:
        results.append({"task": {"type": "bias"}, "dataset": {"name": pairs["source"], "type": "minimal-pairs"},
                        "metrics": [{"type": "pct_stereotype", "name": "pct_stereotype", "value": pairs["pct_stereotype"]},
                                    {"type": "likelihood_diff", "name": "likelihood_diff",
                                     "value": pairs["likelihood_diff"]}]})
    if results:
        meta["model-index"] = [{"name": recipe.name, "results": results}]
    return ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]


def _document_data(recipe: Recipe, stats: dict, meta: dict, canaries) -> list[str]:
    return [f"- {stats.get('output', {}).get('documents', '?')} documents, "
            f"{stats.get('output', {}).get('bytes', 0) / 1e6:.2f} MB after cleaning "
            f"(steps: {', '.join(recipe.data.steps)}). See data/data_card.md.",
            f"- {meta.get('train_tokens', 0):,} training tokens, {meta.get('val_tokens', 0):,} validation "
            f"tokens (held out by document)."
            + (f" {canaries} canaries (random secrets, for the privacy measurement) were inserted into the "
               f"training split." if canaries else "")]


def _image_data(data_stage: dict) -> list[str]:
    splits = ", ".join(f"{data_stage[f'{s}_images']:,} {s.replace('_', '-')}" for s in ("train", "val", "test", "held_out")
                       if data_stage.get(f"{s}_images"))
    return [f"- {data_stage.get('images', '?')} images with captions ({splits or 'not read yet'}); "
            f"{data_stage.get('skipped_images', 0)} unreadable images skipped. Each image's SHA-256, caption, "
            f"split and origin are in data/images.jsonl; see data/data_card.md."]


def _lineage(recipe: Recipe) -> list[str]:
    """The training stages behind this model, oldest first: each base run named by init_from."""
    from lmforge.recipe import load_recipe
    chain, current, seen = [], recipe, {recipe.fingerprint()}
    while current is not None:
        data = (f"conversations {current.data.conversations}" if current.data.conversations else
                f"labelled {current.data.labelled}" if current.data.labelled else
                f"images {current.data.images.source}" if current.train.objective == "contrastive" else
                "sources " + ", ".join(s.name or s.kind for s in current.data.sources))
        chain.append(f"{current.name}: {current.train.objective} on {data}"
                     + (f" (adapter: {current.train.adapter})" if current.train.adapter else ""))
        base = Path(current.model.init_from) / "recipe.toml" if current.model.init_from else None
        if base is None or not base.is_file():
            current = None
        else:
            try:
                current = load_recipe(base)
            except UserError:         # a base run whose recipe no longer reads: the chain stops there
                current = None
            if current is not None and current.fingerprint() in seen:
                current = None        # a chain that comes back to a recipe it has shown: stop, do not loop
            elif current is not None:
                seen.add(current.fingerprint())
    return [f"{i}. {step}" for i, step in enumerate(reversed(chain), 1)]


def _governance(governance: dict) -> list[str]:
    if not governance:
        return ["## Bias, privacy and release checks", "",
                "Not measured (the governance stage did not run: `lmforge eval RUN --task governance`).", ""]
    lines = ["## Bias", ""]
    bias = governance.get("bias", {})
    pairs = bias.get("minimal_pairs")
    if pairs:
        lo, hi = pairs["ci95"]
        lines += [f"- Minimal pairs ({pairs['source']}, {pairs['pairs']} pairs, {pairs['score']}): the model prefers "
                  f"the more stereotyping sentence in {100 * pairs['pct_stereotype']:.1f}% of pairs (95% interval "
                  f"{100 * lo:.1f}-{100 * hi:.1f}%; 50% is unbiased), mean likelihood difference "
                  f"{pairs['likelihood_diff']}."]
        for group, b in sorted(pairs.get("by_type", {}).items()):
            lines.append(f"  - {group}: {100 * b['pct_stereotype']:.1f}% of {b['pairs']}")
    cf = bias.get("counterfactual")
    if cf:
        for dim, d in cf["dimensions"].items():
            if "gap" in d:
                lines.append(f"- Counterfactual templates, {dim}: per-token loss of the same sentence by group "
                             + ", ".join(f"{g} {v}" for g, v in d["nll_per_token"].items()) + f" (gap {d['gap']}).")
            else:
                lines.append(f"- Counterfactual templates, {dim}: {100 * d['flip_rate']:.0f}% of templates change "
                             f"label with the group; accuracy by group "
                             + (", ".join(f"{g} {v}" for g, v in d["accuracy"].items()) if d["accuracy"] else "n/a")
                             + ".")
    privacy = governance.get("privacy", {})
    lines += ["", "## Privacy", ""]
    if "canaries" in privacy:
        c = privacy["canaries"]
        lines.append(f"- Canaries (random secrets inserted into the training split; exposure in bits, "
                     f"{c['space_bits']} = fully memorised, about 1 = never seen):")
        lines += [f"  - {'never inserted' if k == 'controls' else 'inserted ' + k + ' times'}: mean exposure "
                  f"{v['mean_exposure']}, max {v['max_exposure']}" for k, v in c["by_repetitions"].items()]
    if "membership" in privacy and "attacks" in privacy["membership"]:
        m = privacy["membership"]
        lines.append(f"- Membership inference over {m['members']} training and {m['non_members']} held-out passages "
                     f"(ROC AUC, 0.5 = no leakage): " + ", ".join(
                         f"{name} {a['auc']} [{a['ci95'][0]}, {a['ci95'][1]}]" for name, a in m["attacks"].items()) + ".")
    if "pii_in_outputs" in privacy:
        p = privacy["pii_in_outputs"]
        lines.append(f"- Personal data in {p['samples']} sampled outputs: {p['total']} items"
                     + (" (" + ", ".join(f"{k} {v}" for k, v in p["counts"].items() if v) + ")" if p["total"] else "")
                     + ".")
    if not privacy:
        lines.append("- Not measured for this kind of model.")
    lines += ["", "## Release checks", "", "| check | value | threshold | status |", "|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['value']} | {'-' if r['threshold'] is None else r['threshold']} | {r['status']} |"
              for r in governance.get("checks", [])]
    lines += ["", f"Release gate: **{'passed' if governance.get('passed') else 'FAILED'}** (`lmforge check`).", ""]
    return lines


def write_model_card(run: RunDir, recipe: Recipe) -> None:
    manifest = run.manifest()
    stages = manifest.get("stages", {})
    train = stages.get("train", {})
    res = _load(run.own_result)
    meta = _load(run.token_files[2])
    stats = _load(run.data / "stats.json")
    mcfg_path = next(iter(sorted(run.checkpoints.glob("*/model_config.json"))), None) if run.checkpoints.exists() else None
    mcfg = config_from_dict(_load(mcfg_path)) if mcfg_path else recipe.model.resolved()
    images = recipe.data.images if recipe.train.objective == "contrastive" else None
    sources = images.source if images else \
        ", ".join(f"{s.name or s.kind}{' (' + s.path + ')' if s.path else ''}" for s in recipe.data.sources)
    licences = ([images.licence] if images and images.licence else [] if images else
                sorted({s.licence for s in recipe.data.sources if s.licence})) or ["not declared in the recipe"]

    governance = _load(run.eval_result("governance"))
    canaries = stages.get("tokens", {}).get("canaries")
    lines = _front_matter(recipe, res, governance, licences)
    lines += [f"# Model card: {recipe.name}", "",
             "## Model details",
             f"- Architecture: {get_family(mcfg.arch).describe(mcfg)}.",
             f"- Objective: {recipe.train.objective}.",
             f"- Parameters: {format(train['parameters'], ',') if 'parameters' in train else '? (not trained yet)'}.",
             f"- Tokenizer: {recipe.tokenizer.kind}, {meta.get('vocab_size') or stages.get('tokenizer', {}).get('vocab_size', '?')} tokens.",
             f"- Trained with lmforge {manifest.get('versions', {}).get('lmforge', '?')}, torch "
             f"{manifest.get('versions', {}).get('torch', '?')}, seed {recipe.seed}.", "",
             "## Training data",
             f"- Sources: {sources}; licences: {', '.join(licences)}.",
             *(_image_data(stages.get("data", {})) if images else _document_data(recipe, stats, meta, canaries)), "",
             "## Training stages", *_lineage(recipe), "",
             "## Training",
             f"- {train.get('steps', '?')} steps, {train.get('tokens', 0):,} tokens, "
             f"{train.get('seconds', 0):.0f} s wall time on {train.get('world_size', 1)} process(es); "
             f"optimizer {recipe.train.optimizer}, schedule {recipe.train.schedule}, "
             f"autocast {recipe.train.dtype}.", "",
             "## Evaluation (held-out data)"]
    lines += _results(res, recipe)
    if "languages" in res:
        lines += ["", "### By language", "| " + " | ".join(LANGUAGE_HEADER) + " |", "|" + "---|" * len(LANGUAGE_HEADER)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in language_rows(res["languages"])]
        lines += ["", language_summary(res["languages"])]
    rows = task_rows(run)
    if rows:
        lines += ["", "## Evaluation (tasks, `lmforge eval --task`)", "| " + " | ".join(TASK_HEADER) + " |",
                  "|" + "---|" * len(TASK_HEADER)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    lines += [""] + _governance(governance)
    lines += ["## Intended use and limitations",
              "- A small model trained from scratch for learning and experimentation. It produces fluent-looking "
              "but often wrong text; do not rely on it for facts, advice or decisions.",
              "- It reflects its training data only (its sources, language and era); biases and gaps in that "
              "data carry over. Personal data patterns (e-mails, phone numbers, IP addresses) were "
              "redacted when the `pii` step ran, but redaction is pattern-based and not exhaustive.",
              "- Metrics are on held-out documents from the same sources; they say little about other text.", ""]
    atomic.write_text(run.model_card, "\n".join(lines))
