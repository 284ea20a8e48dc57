"""The classification task (finetune/__init__.py): labelled texts -> a classifier head.

    data       data.labelled (+ labelled_val / labelled_test, or a split) -> data/labelled.jsonl
    tokens     each text tokenized -> tokens/labelled.json (ids, label index)
    train      the head added for the training labels, layers frozen by train.train_layers
    evaluate   test accuracy (with its standard error), macro-F1, the confusion matrix and,
               with eval.zero_shot_task, the base model's zero-shot accuracy on that task
               -> eval/classify.json
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from lmforge import atomic
from lmforge.data.conversations import split
from lmforge.data.labelled import check_labels, read_labelled
from lmforge.errors import UserError
from lmforge.eval.classification import confusion_matrix, macro_f1
from lmforge.finetune import Task
from lmforge.models.classifier import add_head, freeze_for
from lmforge.recipe import Recipe
from lmforge.rundir import RunDir
from lmforge.stages import say
from lmforge.tokenizer.load import load_tokenizer, special_ids
from lmforge.train.objectives.classify import predict

SPLITS = ("train", "val", "test")


def read_splits(recipe: Recipe) -> dict[str, list]:
    d = recipe.data
    if not d.labelled:
        raise UserError("train.objective = 'classify' needs data.labelled (a .tsv, .csv or .jsonl file of "
                        "labelled texts)")
    train = read_labelled(d.labelled, d.text_column, d.label_column)
    if d.labelled_val:
        parts = {"train": train, "val": read_labelled(d.labelled_val, d.text_column, d.label_column),
                 "test": read_labelled(d.labelled_test, d.text_column, d.label_column)}
    else:
        parts = dict(zip(("train", "test", "val"), split(train, tuple(d.conversation_split))))
    if d.max_examples:
        parts["train"] = parts["train"][:d.max_examples]
    for part in parts.values():
        for e in part:
            e.label = d.label_names.get(e.label, e.label)
    for name in SPLITS:
        if not parts[name]:
            raise UserError(f"data.labelled: the {name} split is empty; add examples or change "
                            f"data.conversation_split")
    labels = sorted({e.label for e in parts["train"]})
    if len(labels) < 2:
        raise UserError(f"{d.labelled}: the training examples have one label only ({labels[0]}); a classifier needs two")
    check_labels(parts["val"] + parts["test"], labels)
    return parts


class Classification(Task):
    result = "classify"

    def data(self, run: RunDir, recipe: Recipe) -> None:
        t0 = time.time()
        parts = read_splits(recipe)
        out = run.data / "labelled.jsonl"
        atomic.write_text(out, "".join(json.dumps({"split": name, "text": e.text, "label": e.label,
                                                   "where": e.where}, ensure_ascii=False) + "\n"
                                       for name in SPLITS for e in parts[name]))
        counts = {f"{name}_examples": len(parts[name]) for name in SPLITS}
        run.record_stage("data", time.time() - t0, inputs=[Path(recipe.data.labelled)], outputs=[out], **counts)
        say("data: " + ", ".join(f"{n:,} {k.split('_')[0]}" for k, n in counts.items()) + " labelled examples")

    def tokens(self, run: RunDir, recipe: Recipe) -> None:
        t0 = time.time()
        tok = load_tokenizer(run.tokenizer)
        rows = [json.loads(line) for line in (run.data / "labelled.jsonl").read_text(encoding="utf-8").splitlines()]
        labels = sorted({r["label"] for r in rows if r["split"] == "train"})
        index = {name: i for i, name in enumerate(labels)}
        encoded = tok.encode_batch([r["text"] for r in rows])
        out = {"labels": labels, **{name: [] for name in SPLITS}}
        for r, enc in zip(rows, encoded):
            out[r["split"]].append([enc.ids, index[r["label"]]])
        path = run.tokens / "labelled.json"
        atomic.write_json(path, out, indent=None)
        run.record_stage("tokens", time.time() - t0, inputs=[run.tokenizer_json], outputs=[path], labels=labels)
        say(f"tokens: {len(rows):,} texts, labels {', '.join(labels)}")

    def examples(self, run: RunDir) -> dict:
        path = run.tokens / "labelled.json"
        if not path.is_file():
            raise UserError(f"{run.path}: no tokenized examples (tokens/labelled.json); run `lmforge prepare {run.path}`")
        raw = json.loads(path.read_text())
        return {"labels": raw["labels"], **{name: [(ids, lab) for ids, lab in raw[name]] for name in SPLITS}}

    def before_training(self, run: RunDir, recipe: Recipe, model, examples: dict, seq_len: int, tokenizer) -> None:
        labels = examples["labels"]
        if model.cfg.labels and model.cfg.labels != labels:
            raise UserError(f"model.init_from is a classifier of labels {model.cfg.labels}, the data's are "
                            f"{labels}; start from its base model instead")
        if not model.cfg.labels:
            add_head(model, labels)
        trainable = freeze_for(model, recipe.train.train_layers)
        say(f"train: classifier head for {len(labels)} labels; {trainable / 1e6:.2f}M parameters train "
             f"(train.train_layers = {recipe.train.train_layers})")

    def evaluate(self, run: RunDir, recipe: Recipe, model, window: int) -> dict:
        examples = self.examples(run)
        labels, test = examples["labels"], examples["test"]
        pad = special_ids(load_tokenizer(run.tokenizer))["pad"] or 0
        probs = predict(model, test, window, pad)
        gold = [labels[lab] for _, lab in test]
        pred = [labels[i] for i in probs.argmax(-1).tolist()]
        acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
        names, counts = confusion_matrix(gold, pred, labels)
        result = {"accuracy": round(acc, 4), "accuracy_stderr": round(math.sqrt(acc * (1 - acc) / len(gold)), 4),
                  "macro_f1": round(macro_f1(gold, pred, labels), 4), "test_examples": len(gold),
                  "majority_accuracy": round(max(gold.count(lab) for lab in labels) / len(gold), 4),
                  "confusion_matrix": {"labels": names, "counts": counts.tolist(), "rows": "gold",
                                       "columns": "predicted"},
                  "zero_shot_accuracy": zero_shot_accuracy(recipe)}
        zs = result["zero_shot_accuracy"]
        say(f"evaluate: test accuracy {acc:.3f} ± {result['accuracy_stderr']:.3f}, macro-F1 {result['macro_f1']:.3f} "
             f"(majority class {result['majority_accuracy']:.3f}"
             + (f", base model zero-shot {zs:.3f})" if zs is not None else ")"))
        return result


def zero_shot_accuracy(recipe: Recipe) -> float | None:
    """The base model's accuracy on `eval.zero_shot_task` (a multiple-choice task over the same test
    set, e.g. tasks/sst2.toml); None without one, or for a base that cannot score text (an encoder)."""
    name = recipe.eval.zero_shot_task
    if not name:
        return None
    from lmforge.eval.backends import load_lm
    from lmforge.eval.harness import evaluate_task
    from lmforge.eval.tasks import load_task
    from lmforge.models.io import find_weights, read_model_config
    from lmforge.models.registry import family_of
    if not family_of(read_model_config(find_weights(recipe.model.init_from))).generative:
        return None
    result = evaluate_task(load_lm(recipe.model.init_from), load_task(name), num_fewshot=0, seed=recipe.eval.seed)
    return round(result["metrics"]["acc"]["value"], 4)
