"""Labelled texts for classification: TSV, CSV or JSONL with a text column and a label column.

    sentence<TAB>label            (.tsv, a header row names the columns; GLUE's layout)
    text,label                    (.csv, the same with commas; quoted fields as Python's csv reads them)
    {"text": ..., "label": ...}   (.jsonl, one example per line)

Labels are kept as strings ("0", "positive"); the label set is the training file's, in sorted
order, so a label that appears only in a validation or test file is an error naming file and
line rather than a class the head was never trained on. A bad line is an error naming file and
line; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import UserError


@dataclass
class Labelled:
    text: str
    label: str
    where: str


def read_labelled(path: str | Path, text_column: str = "text", label_column: str = "label") -> list[Labelled]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"classification data not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8") from None
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    rows.append((json.loads(line), n))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: invalid JSON ({e.msg})") from None
    elif path.suffix in (".tsv", ".csv"):
        # GLUE's TSVs are not quoted (a review may hold a lone '"'): tabs split, nothing else
        reader = (csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if path.suffix == ".tsv"
                  else csv.reader(lines))
        table = [(row, n) for n, row in enumerate(reader, 1) if row]
        if not table:
            raise UserError(f"{path}: empty file")
        header = table[0][0]
        rows = []
        for row, n in table[1:]:
            if len(row) != len(header):
                raise UserError(f"{path}:{n}: {len(row)} fields where the header has {len(header)}")
            rows.append((dict(zip(header, row)), n))
    else:
        raise UserError(f"{path}: expected a .tsv, .csv or .jsonl file of labelled texts")
    out = []
    for row, n in rows:
        if not isinstance(row, dict) or text_column not in row or label_column not in row:
            raise UserError(f"{path}:{n}: expected columns '{text_column}' and '{label_column}' "
                            f"(set data.text_column / data.label_column)")
        text, label = row[text_column], row[label_column]
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}:{n}: empty or non-text '{text_column}'")
        label = str(label).strip()
        if not label:
            raise UserError(f"{path}:{n}: empty '{label_column}'")
        out.append(Labelled(text.strip(), label, f"{path}:{n}"))
    if not out:
        raise UserError(f"{path}: no examples")
    return out


def check_labels(examples: list[Labelled], labels: list[str]) -> None:
    known = set(labels)
    for e in examples:
        if e.label not in known:
            raise UserError(f"{e.where}: label {e.label!r} is not in the training labels "
                            f"({', '.join(labels)})")
