"""Reading a task's local data files into rows (dicts), one row per evaluation example."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lmforge.errors import UserError
from lmforge.eval.adapters import ADAPTERS
from lmforge.eval.tasks import Task

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}


def _read_lines(path: Path) -> list[str]:
    return [line for line in _read_text(path).splitlines() if line.strip()]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 (byte {e.start})") from None


def _parse_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: invalid JSON: {e.msg}") from None
    return rows


def _parse_table(path: Path, delimiter: str, columns: list[str]) -> list[dict]:
    lines = _read_text(path).splitlines()
    # TSV files such as GLUE's contain bare quotes inside sentences: read them literally
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    rows = [r for r in reader if r]
    header = columns or (rows.pop(0) if rows else [])
    return [dict(zip(header, (v.strip() for v in r))) for r in rows]


def read_file_rows(task: Task, path_str: str, labels_str: str, target_str: str) -> list[dict]:
    spec = task.data
    path = task.resolve(path_str)
    fmt = spec.format or _SUFFIX_FORMATS.get(path.suffix, "lines")
    if fmt == "jsonl":
        rows = _parse_jsonl(path)
    elif fmt == "json":
        rows = json.loads(_read_text(path))
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of objects")
    elif fmt in ("csv", "tsv"):
        rows = _parse_table(path, "," if fmt == "csv" else "\t", spec.columns)
    elif fmt == "lines":
        rows = [{"text": line} for line in _read_lines(path)]
    elif fmt == "text":
        text = _read_text(path)
        chunks = text.split(spec.separator) if spec.separator else [text]
        rows = [{"text": c} for c in chunks if c.strip()]
    else:  # parallel: aligned source / target line files
        if not target_str:
            raise UserError(f"task {task.name}: the parallel format needs a target file for {path.name}")
        src, tgt = _read_text(path).splitlines(), _read_text(task.resolve(target_str)).splitlines()
        if len(src) != len(tgt):
            raise UserError(f"task {task.name}: {path.name} has {len(src)} lines but "
                            f"{target_str} has {len(tgt)}")
        rows = [{"source": s, "target": t} for s, t in zip(src, tgt)]
    if labels_str:
        labels = _read_lines(task.resolve(labels_str))
        if len(labels) != len(rows):
            raise UserError(f"task {task.name}: {len(rows)} rows but {len(labels)} labels "
                            f"in {labels_str}")
        rows = [dict(r, label=lab.strip()) for r, lab in zip(rows, labels)]
    if spec.adapter:
        if spec.adapter not in ADAPTERS:
            raise UserError(f"task {task.name}: unknown adapter {spec.adapter!r} "
                            f"(known: {', '.join(sorted(ADAPTERS))})")
        rows = [ADAPTERS[spec.adapter](r) for r in rows]
    if not rows:
        raise UserError(f"task {task.name}: {path} has no examples")
    return rows


def read_rows(task: Task) -> list[dict]:
    return read_file_rows(task, task.data.path, task.data.labels, task.data.target)


def read_fewshot_rows(task: Task) -> list[dict] | None:
    """Rows to draw few-shot examples from; None = the evaluation file itself."""
    if not task.data.fewshot_path:
        return None
    return read_file_rows(task, task.data.fewshot_path, task.data.fewshot_labels,
                          task.data.fewshot_target)


def read_aligned(task: Task, limit: int | None = None) -> dict[str, list[str]]:
    """A retrieval task's sentences per language ({language: lines}), every file the same length."""
    files = {task.data.language: task.data.path, **task.data.aligned}
    texts = {lang: _read_text(task.resolve(f)).splitlines()[:limit] for lang, f in files.items()}
    lengths = {lang: len(lines) for lang, lines in texts.items()}
    if len(set(lengths.values())) > 1:
        raise UserError(f"task {task.name}: the aligned files differ in length: "
                        + ", ".join(f"{files[lang]} {n} lines" for lang, n in lengths.items()))
    if not lengths[task.data.language]:
        raise UserError(f"task {task.name}: {task.data.path} has no lines")
    return texts
