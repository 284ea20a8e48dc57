"""Counterfactual probes: the same sentence about different groups of people.

The templates file (JSON; lmforge ships one, `[governance] templates` names your own) has
`dimensions` (e.g. gender: {female: ["The woman", ...], male: [...]}) and `templates`
whose text opens with `{person}`, optionally with the `label` a classifier should give.

- Language models: for every template and term, the negative log-likelihood per token of the
  rest of the sentence given the term ("... is a brilliant programmer." after "The woman"),
  the same tokens for every group; averaged per group, the gap is the largest difference
  between two groups of one dimension (nats per token).
- Classifiers: a template flips when its groups do not all get the same label (each group's
  label being the one most of its terms get, so one odd term is not a group's verdict); per-group
  accuracy on the templates that have a label the classifier knows.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from lmforge.errors import UserError
from lmforge.governance.config import data_file

SLOT = "{person}"


def load_templates(name: str) -> dict:
    path, where = data_file(name, "templates")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}:{e.lineno}: invalid JSON ({e.msg})") from None
    dims, templates = data.get("dimensions"), data.get("templates")
    if not isinstance(dims, dict) or not dims or not isinstance(templates, list) or not templates:
        raise UserError(f"{where}: needs 'dimensions' (groups of terms) and 'templates'")
    for dim, groups in dims.items():
        if not isinstance(groups, dict) or len(groups) < 2 or not all(
                isinstance(t, list) and t and all(isinstance(x, str) and x.strip() for x in t) for t in groups.values()):
            raise UserError(f"{where}: dimension {dim!r} needs at least two groups, each a list of terms")
    for i, t in enumerate(templates):
        if not isinstance(t, dict) or not isinstance(t.get("text"), str) or not t["text"].startswith(SLOT) \
                or t["text"] == SLOT:
            raise UserError(f"{where}: templates[{i}] must be {{'text': '{SLOT} ...'}} (the slot opens the sentence)")
    return data


def language_model_gaps(lm, data: dict) -> dict:
    requests, keys = [], []
    for dim, groups in data["dimensions"].items():
        for group, terms in groups.items():
            for t in data["templates"]:
                rest = t["text"][len(SLOT):]
                for term in terms:
                    pair = lm.encode_pair(term, rest)      # encoded once: scored and counted
                    requests.append(pair)
                    keys.append((dim, group, len(pair[1])))
    lls = [ll for ll, _ in lm.score_tokens(requests)]
    out = {}
    for dim, groups in data["dimensions"].items():
        per_group = {}
        for group in groups:
            rows = [(ll, n) for ll, (d, g, n) in zip(lls, keys) if d == dim and g == group]
            per_group[group] = round(-sum(ll for ll, _ in rows) / sum(n for _, n in rows), 4)
        out[dim] = {"nll_per_token": per_group,
                    "gap": round(max(per_group.values()) - min(per_group.values()), 4),
                    "most_likely": min(per_group, key=per_group.get)}
    return {"dimensions": out, "max_gap": max(d["gap"] for d in out.values()),
            "templates": len(data["templates"])}


def classifier_flips(classifier, data: dict) -> dict:
    out = {}
    for dim, groups in data["dimensions"].items():
        flips, correct = 0, {g: [] for g in groups}
        for t in data["templates"]:
            labels = {}
            for group, terms in groups.items():
                predicted = [r["label"] for r in classifier.classify([t["text"].replace(SLOT, x) for x in terms])]
                labels[group] = Counter(predicted).most_common(1)[0][0]
                if t.get("label") in classifier.labels:
                    correct[group] += [p == t["label"] for p in predicted]
            flips += len(set(labels.values())) > 1
        accuracy = {g: round(float(np.mean(v)), 4) for g, v in correct.items() if v}
        out[dim] = {"flip_rate": round(flips / len(data["templates"]), 4), "accuracy": accuracy,
                    "accuracy_gap": round(max(accuracy.values()) - min(accuracy.values()), 4) if accuracy else None}
    return {"dimensions": out, "max_flip_rate": max(d["flip_rate"] for d in out.values()),
            "templates": len(data["templates"])}
