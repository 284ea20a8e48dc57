"""Multiple-choice and zero-shot classification scoring: acc and acc_norm with standard errors.

Each choice is scored as the log-likelihood of `target_delimiter + choice` after
the prompt. acc takes the most likely choice; acc_norm divides each choice's
log-likelihood by its length in characters first, so long answers are not
penalised for having more tokens (lm-evaluation-harness's acc_norm).
"""

from __future__ import annotations

import numpy as np

from lmforge.eval.classification import confusion_matrix, macro_f1
from lmforge.eval.lm import EvalLM
from lmforge.eval.prompts import Example
from lmforge.eval.stats import mean_stderr
from lmforge.eval.tasks import Task


def _metric(values: list[float]) -> dict:
    return {"value": float(np.mean(values)), "stderr": mean_stderr(values)}


def evaluate_multiple_choice(lm: EvalLM, task: Task, examples: list[Example],
                             contexts: list[str]) -> dict:
    delim = task.prompt.target_delimiter
    requests = [(ctx, delim + choice) for ctx, ex in zip(contexts, examples) for choice in ex.answers]
    results = iter(lm.loglikelihood(requests))
    acc, acc_norm, preds, samples = [], [], [], []
    for ctx, ex in zip(contexts, examples):
        lls = np.array([next(results)[0] for _ in ex.answers])
        lengths = np.array([max(len(c), 1) for c in ex.answers], dtype=np.float64)
        pred, pred_norm = int(lls.argmax()), int((lls / lengths).argmax())
        acc.append(float(pred == ex.gold))
        acc_norm.append(float(pred_norm == ex.gold))
        preds.append(pred)
        samples.append({"prompt": ctx, "choices": ex.answers, "gold": ex.gold,
                        "loglikelihoods": lls.tolist(), "pred": pred, "pred_norm": pred_norm})
    out = {"metrics": {"acc": _metric(acc), "acc_norm": _metric(acc_norm)}, "samples": samples}
    # the same choices for every example make it a classification task: add per-class views
    if all(ex.answers == examples[0].answers for ex in examples):
        names = examples[0].answers
        gold = [names[ex.gold] for ex in examples]
        pred_names = [names[p] for p in preds]
        labels, counts = confusion_matrix(gold, pred_names, names)
        out["metrics"]["macro_f1"] = {"value": macro_f1(gold, pred_names, names)}
        out["confusion_matrix"] = {"labels": labels, "counts": counts.tolist(),
                                   "rows": "gold", "columns": "predicted"}
    return out
