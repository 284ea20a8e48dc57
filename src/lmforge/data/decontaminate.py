"""Remove (or flag) training documents that share a long n-gram with an evaluation set.

GPT-3 and later papers use 13-word n-grams: long enough that a shared one is almost
never chance, short enough to catch a copied test question inside a bigger page.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from lmforge.data.config import DecontaminateConfig
from lmforge.data.steps import Record, Step
from lmforge.errors import UserError

_WORD = re.compile(r"\w+")
EVAL_ONLY_TASKS = ("crows_pairs",)   # data statements that allow evaluation only: always kept out of training


def _strings(value) -> list[str]:
    """Every string inside a JSON value (questions, choices, answers...)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def eval_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"data.decontaminate.files: not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return [s for line in text.splitlines() if line.strip() for s in _strings(json.loads(line))]
        if suffix == ".json":
            return _strings(json.loads(text))
    except json.JSONDecodeError as e:
        raise UserError(f"data.decontaminate.files: {path} line {e.lineno}: invalid JSON ({e.msg})") from None
    if suffix in (".csv", ".tsv"):
        rows = csv.reader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        return [cell for row in rows for cell in row]
    return text.splitlines()


def ngrams(text: str, n: int) -> set[int]:
    words = _WORD.findall(text.lower())
    return {hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1)}


def eval_only_files() -> list[Path]:
    """The data files of the evaluation-only tasks that are present (CrowS-Pairs)."""
    from lmforge.eval.tasks import load_task
    out = []
    for name in EVAL_ONLY_TASKS:
        try:
            task = load_task(name)
        except UserError:
            continue
        path = task.resolve(task.data.path)
        if path.is_file():
            out.append(path)
    return out


class Decontaminate(Step):
    name = "decontaminate"

    def __init__(self, cfg: DecontaminateConfig):
        self.cfg = cfg
        self.grams: set[int] = set()
        for f in [*map(Path, cfg.files), *eval_only_files()]:
            for t in eval_texts(f):
                self.grams |= ngrams(t, cfg.ngram)

    def apply(self, doc, rec: Record):
        shared = len(ngrams(doc.text, self.cfg.ngram) & self.grams)
        if not shared:
            return doc
        rec.count("contaminated_docs")
        if self.cfg.action == "drop":
            rec.reason = f"shares {shared} {self.cfg.ngram}-grams with the evaluation files"
            return None
        doc.meta["contaminated"] = True
        return doc
