"""Row transforms for well-known dataset layouts, named by a task file's `[data] adapter`.

Each maps one raw row to a row with the fields the task's prompt templates use.
"""

from __future__ import annotations

import re

LETTERS = "ABCDEFGHIJ"


def mmlu(row: dict) -> dict:
    """MMLU csv (question, A, B, C, D, answer letter) -> adds `options`, a lettered list."""
    letters = [c for c in LETTERS if c in row]
    options = "\n".join(f"{c}. {row[c]}" for c in letters)
    return dict(row, options=options)


def _clean_hellaswag(text: str) -> str:
    # WikiHow contexts carry markup such as "[title]" and "[step]" that is not part of the text
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(row: dict) -> dict:
    """HellaSwag jsonl (activity_label, ctx_a, ctx_b, endings, label) -> `query`, cleaned `endings`."""
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return dict(row, query=_clean_hellaswag(row["activity_label"] + ": " + ctx),
                endings=[_clean_hellaswag(e) for e in row["endings"]])


def dialogsum(row: dict) -> dict:
    """DialogSum: `summary` (dev) or summary1..3 (test) -> `references`."""
    refs = [row[k] for k in ("summary", "summary1", "summary2", "summary3") if row.get(k)]
    return dict(row, references=refs)


def scitldr(row: dict) -> dict:
    """SciTLDR: abstract sentences -> `document`; the TLDRs -> `references`."""
    return dict(row, document=" ".join(row["source"]), references=list(row["target"]))


ADAPTERS = {"mmlu": mmlu, "hellaswag": hellaswag, "dialogsum": dialogsum, "scitldr": scitldr}
