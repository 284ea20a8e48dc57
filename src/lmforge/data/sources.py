"""Where documents come from. Each source lists its inputs ("units": files, modules, a start URL)
cheaply and up front, then reads one unit at a time as a stream of (location, text) pairs.

Listing first is what makes sharding by input possible: shard i of n takes every n-th unit,
so a Slurm array job never reads another shard's files. A unit that cannot give text
yields (location, Skip(reason)) or raises Skip, and the pipeline logs it and goes on.
"""

from __future__ import annotations

import ast
import fnmatch
import glob
import re
import os
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

from lmforge.data.config import SourceConfig
from lmforge.data.crawl import crawl
from lmforge.data.extract import Skip, jsonl_ranges, read_jsonl_range, read_texts
from lmforge.errors import UserError

Item = tuple[str, "str | Skip"]

_STDLIB_SKIP_DIRS = {"test", "tests", "idle_test", "idlelib", "__pycache__", "site-packages",
                     "turtledemo", "lib2to3"}
_TOPICS_UNIT = "pydoc_data.topics"
# Uncompressed .jsonl files bigger than this are read as several units, so that one big
# file still keeps every worker busy (a unit is then "path#start-end").
PART_BYTES = 64 << 20
_RANGE = re.compile(r"^(.*)#(\d+)-(\d+)$")


def stdlib_files() -> list[Path]:
    """The interpreter's own standard-library .py files (tests and IDLE left out), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP_DIRS)
        rel = Path(dirpath).relative_to(root)
        top = rel.parts[0] if rel.parts else None
        for name in sorted(filenames):
            module = top or name.removesuffix(".py")
            if name.endswith(".py") and module in sys.stdlib_module_names:
                files.append(Path(dirpath) / name)
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(sysconfig.get_paths()["stdlib"]).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def documented(path: Path) -> list[tuple[str, str, str]]:
    """(qualified name, "module" | "class" | "function", docstring) of one module's documented
    public objects, in file order, found by parsing (never importing) the file."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    module = _module_name(path)
    doc = ast.get_docstring(tree)
    found = [(module, "module", doc)] if doc else []

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if child.name.startswith("_") and not child.name.startswith("__init__"):
                    continue   # private helpers rarely have user-facing prose
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    found.append((name, "class" if isinstance(child, ast.ClassDef) else "function", doc))
                visit(child, name)

    visit(tree, module)
    return found


def module_docstrings(path: Path) -> str:
    """Every docstring of one module as prose."""
    return "\n\n".join(f"Module {name}\n{doc}" if kind == "module" else f"{name}\n{doc}"
                       for name, kind, doc in documented(path))


class Source:
    """One configured source: `units()` lists its inputs, `read(unit)` streams one of them."""

    def __init__(self, cfg: SourceConfig):
        self.cfg = cfg
        # The interpreter's own files are under the Python Software Foundation licence.
        self.licence = cfg.licence or ("PSF-2.0" if cfg.kind.startswith("python_") else "")

    def units(self) -> list[str]:
        kind = self.cfg.kind
        if kind in ("python_docs", "python_source"):
            files = [str(p) for p in stdlib_files() if not self._excluded(_module_name(p))]
            return ([_TOPICS_UNIT] if kind == "python_docs" else []) + files
        if kind == "files":
            return [u for u in self._expand_files() if not self._excluded(u)]
        return [self.cfg.path]           # url, hf: a single stream

    def _excluded(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.cfg.exclude)

    def read(self, unit: str) -> Iterator[Item]:
        kind = self.cfg.kind
        if kind == "python_docs":
            yield from self._python_docs(unit)
        elif kind == "python_source":
            yield unit, Path(unit).read_text(encoding="utf-8", errors="surrogateescape")
        elif kind == "files":
            part = _RANGE.match(unit) if not os.path.exists(unit) else None
            if part:
                records = read_jsonl_range(Path(part[1]), int(part[2]), int(part[3]), self.cfg.text_field)
            else:
                records = read_texts(Path(unit), self.cfg.text_field)
            yield from (_lines(records) if self.cfg.lines else records)
        elif kind == "url":
            for url, *rest in crawl(unit, max_pages=self.cfg.max_pages, max_depth=self.cfg.max_depth,
                                    delay_s=self.cfg.delay_s, same_site=self.cfg.same_site):
                yield url, (rest[0] if rest[0] is not None else Skip(rest[1]))
        else:
            yield from _hf_rows(self.cfg)

    def _python_docs(self, unit: str) -> Iterator[Item]:
        if unit == _TOPICS_UNIT:
            from pydoc_data.topics import topics
            for key in sorted(topics):
                yield f"{_TOPICS_UNIT}:{key}", topics[key]
            return
        try:
            text = module_docstrings(Path(unit))
        except (SyntaxError, ValueError) as e:
            raise Skip(f"cannot parse: {e}") from None
        if text:
            yield _module_name(Path(unit)), text

    def _expand_files(self) -> list[str]:
        pattern = os.path.expanduser(self.cfg.path)
        if any(ch in pattern for ch in "*?["):
            matches = glob.glob(pattern, recursive=True)
        elif os.path.isdir(pattern):
            matches = [os.path.join(d, f) for d, dirs, names in os.walk(pattern)
                       for f in names if not f.startswith(".")
                       if not any(part.startswith(".") for part in Path(d).relative_to(pattern).parts)]
        elif os.path.exists(pattern):
            matches = [pattern]
        else:
            raise UserError(f"source '{self.cfg.label()}': path not found: {self.cfg.path}")
        files = sorted(m for m in matches if os.path.isfile(m))
        if not files:
            raise UserError(f"source '{self.cfg.label()}': no files match {self.cfg.path}")
        units = []
        for f in files:
            if f.lower().endswith(".jsonl") and os.path.getsize(f) > PART_BYTES:
                units += [f"{f}#{a}-{b}" for a, b in jsonl_ranges(Path(f), PART_BYTES)]
            else:
                units.append(f)
        return units


def _lines(records: Iterator[Item]) -> Iterator[Item]:
    """Each non-empty line of each record as its own document, located by its line number."""
    for location, text in records:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield f"{location}:{n}", line


def _hf_rows(cfg: SourceConfig) -> Iterator[Item]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"source '{cfg.label()}': the hf source needs the 'datasets' package "
                        "(pip install datasets)") from None
    local = Path(cfg.path)
    builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
    try:
        if local.exists():
            suffix = local.suffix.lower() if local.is_file() else ".parquet"
            files = str(local) if local.is_file() else str(local / "**" / f"*{suffix}")
            ds = datasets.load_dataset(builders.get(suffix, "text"), data_files=files, split="train",
                                       streaming=True)
        else:
            ds = datasets.load_dataset(cfg.path, split=cfg.split, streaming=True)
    except Exception as e:   # datasets raises many types (connection, missing config, ...)
        raise UserError(f"source '{cfg.label()}': cannot load dataset '{cfg.path}': "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    for n, row in enumerate(ds):
        if cfg.text_field not in row:
            raise UserError(f"source '{cfg.label()}': dataset '{cfg.path}' has no field "
                            f"'{cfg.text_field}' (found: {', '.join(row)}); set text_field")
        yield f"{cfg.path}:{cfg.split}:{n}", str(row[cfg.text_field] or "")
