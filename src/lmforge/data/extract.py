"""Turn one input file into texts: format by extension, optional compression, binary detection.

Every reader is a generator, so a large JSONL or CSV file streams in constant memory.
Text is decoded with 'surrogateescape' so invalid UTF-8 bytes survive until the
normalize step repairs and counts them, instead of vanishing silently here.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from pathlib import Path
from typing import IO, Iterator

from lmforge.data.htmltext import main_text
from lmforge.errors import UserError
from lmforge.jsonl import numbered_rows

_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".zip", ".tar", ".so", ".pyc", ".exe", ".bin",
                    ".pt", ".safetensors", ".npy", ".woff", ".ico", ".mp3", ".mp4", ".whl"}


class Skip(Exception):
    """An input that cannot give text (binary, unreadable); the pipeline logs it and goes on."""


def _open_binary(path: Path) -> IO[bytes]:
    suffix = path.suffix.lower()
    if suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise Skip("zstandard is not installed (pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    opener = _COMPRESSED.get(suffix, open)
    return opener(path, "rb")


def inner_suffix(path: Path) -> str:
    """The format suffix, looking through a compression suffix: data.jsonl.gz -> .jsonl"""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and (suffixes[-1] in _COMPRESSED or suffixes[-1] == ".zst"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", "surrogateescape")
    bad = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    return len(text) > 0 and bad / len(text) > 0.3


def _text_stream(path: Path) -> IO[str]:
    try:
        raw = _open_binary(path)
        buffered = io.BufferedReader(raw) if not hasattr(raw, "peek") else raw
        head = buffered.peek(8192)[:8192]
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise Skip(f"unreadable: {e}") from None
    if _looks_binary(head):
        buffered.close()
        raise Skip("binary content")
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="surrogateescape", newline="")


def read_texts(path: Path, text_field: str) -> Iterator[tuple[str, str]]:
    """Yield (location, text) pairs; location is the path plus a row number for multi-record files."""
    suffix = inner_suffix(path)
    if suffix in _BINARY_SUFFIXES:
        raise Skip(f"binary file type {suffix}")
    if suffix == ".pdf":
        yield str(path), _pdf_text(path)
        return
    if suffix == ".parquet":
        yield from _parquet_rows(path, text_field)
        return
    with _text_stream(path) as f:
        if suffix == ".jsonl":
            yield from _jsonl_rows(f, path, text_field)
        elif suffix == ".json":
            yield from _json_rows(f, path, text_field)
        elif suffix in (".csv", ".tsv"):
            yield from _csv_rows(f, path, text_field, "\t" if suffix == ".tsv" else ",")
        elif suffix in (".html", ".htm", ".xhtml"):
            yield str(path), main_text(f.read())
        else:   # .txt, .md, .rst and source code: the whole file is one document
            yield str(path), f.read()


def jsonl_ranges(path: Path, part_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges that cut a big uncompressed .jsonl file into parts for parallel workers."""
    size = path.stat().st_size
    return [(start, min(start + part_bytes, size)) for start in range(0, max(size, 1), part_bytes)]


def read_jsonl_range(path: Path, start: int, end: int, text_field: str) -> Iterator[tuple[str, str]]:
    """Records of `path` whose line starts in [start, end); the line cut at `start` belongs to
    the previous range."""
    with open(path, "rb") as f:
        f.seek(start)
        if start:
            f.readline()
        while f.tell() < end:
            offset = f.tell()
            line = f.readline()
            if not line:
                return
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8", "surrogateescape"))
            except json.JSONDecodeError as e:
                raise UserError(f"{path} byte {offset}: invalid JSON ({e.msg})") from None
            yield f"{path}@{offset}", _field(row, path, f"byte {offset}", text_field)


def _field(row, path: Path, where: str, text_field: str) -> str:
    if isinstance(row, str):
        return row
    if not isinstance(row, dict) or text_field not in row:
        keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
        raise UserError(f"{path} {where}: no field '{text_field}' (found: {keys}); set text_field")
    value = row[text_field]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _jsonl_rows(f: IO[str], path: Path, text_field: str) -> Iterator[tuple[str, str]]:
    for n, row in numbered_rows(f, path):
        yield f"{path}:{n}", _field(row, path, f"line {n}", text_field)


def _json_rows(f: IO[str], path: Path, text_field: str) -> Iterator[tuple[str, str]]:
    try:
        data = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} line {e.lineno}: invalid JSON ({e.msg})") from None
    rows = data if isinstance(data, list) else [data]
    for n, row in enumerate(rows):
        yield f"{path}[{n}]", _field(row, path, f"item {n}", text_field)


def _csv_rows(f: IO[str], path: Path, text_field: str, delimiter: str) -> Iterator[tuple[str, str]]:
    reader = csv.DictReader(f, delimiter=delimiter)
    if reader.fieldnames is None:
        return
    if text_field not in reader.fieldnames:
        raise UserError(f"{path}: no column '{text_field}' (found: {', '.join(reader.fieldnames)});"
                        " set text_field")
    for n, row in enumerate(reader, 2):
        yield f"{path}:{n}", row[text_field] or ""


def _parquet_rows(path: Path, text_field: str) -> Iterator[tuple[str, str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise Skip("pyarrow is not installed (pip install pyarrow) to read .parquet") from None
    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise UserError(f"{path}: no column '{text_field}' (found: {', '.join(pf.schema_arrow.names)});"
                        " set text_field")
    n = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            yield f"{path}:{n}", value or ""
            n += 1


def _pdf_text(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise Skip("pypdf is not installed (pip install pypdf) to read .pdf") from None
    try:
        reader = PdfReader(path)
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception as e:   # pypdf raises many types for damaged files
        raise Skip(f"unreadable PDF: {e}") from None
