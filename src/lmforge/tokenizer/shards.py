"""Encode cleaned documents into flat token files (train.bin, val.bin) that training memory-maps.

Each document becomes [BOS] + ids + [EOS]. The split is by document, fixed by the seed,
and always holds out at least one validation document. Batches of documents are parsed and
encoded in worker processes (all cores by default) and written here in input order; only a
few batches are in flight, so memory does not grow with the corpus. Encoding uses tiktoken
when the tokenizer allows it and gives the same ids on a sample (see fast.py), otherwise
Hugging Face `tokenizers`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lmforge.atomic import atomic_path, write_json
from lmforge.data.language_mix import LANGUAGES_FILE, UNDETERMINED, LanguageRuns, write_languages
from lmforge.errors import UserError
from lmforge.parallel import ordered_map
from lmforge.progress import bar
from lmforge.tokenizer.fast import fast_encoder
from lmforge.tokenizer.load import load_tokenizer, special_ids, tokenizer_file
from lmforge.tokenizer.train import document_record, iter_texts

_BATCH_DOCS = 512
_CHECK_DOCS = 32
# the files of a tokens/ directory: written by encode_shards, read by read_shards
TRAIN_BIN, VAL_BIN, VAL_TEXT, META = "train.bin", "val.bin", "val.txt", "meta.json"


def _zero_counts() -> dict[str, int]:
    return {f"{split}_{what}": 0 for split in ("train", "val") for what in ("tokens", "docs", "bytes")}


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            n += block.count(b"\n")
    return n


def validation_indices(n_docs: int, val_fraction: float, seed: int) -> np.ndarray:
    """A sorted random subset of document indices: at least one, at most n_docs - 1."""
    n_val = min(n_docs - 1, max(1, round(n_docs * val_fraction)))
    return np.sort(np.random.default_rng(seed).choice(n_docs, size=n_val, replace=False))


def _hf_encoder(tok) -> Callable[[list[str]], list[np.ndarray]]:
    # one document at a time: the worker processes are the parallelism, and HF's own thread
    # pool must not start before they fork
    def encode(texts: list[str]) -> list[np.ndarray]:
        return [np.array(tok.encode(t, add_special_tokens=False).ids, dtype=np.uint32) for t in texts]
    return encode


def _line_batches(path: Path, is_val: np.ndarray) -> Iterator[tuple[int, list[bytes], np.ndarray]]:
    """(index of the first document, raw lines, which of them are validation documents)."""
    with open(path, "rb") as f:
        start = 0
        while lines := list(islice(f, _BATCH_DOCS)):
            yield start, lines, is_val[start:start + len(lines)]
            start += len(lines)


@dataclass
class _Encoded:
    """One batch, ready to append: token bytes per split, validation texts, counts, and
    (split, language, tokens, bytes) of each document in order."""
    tokens: dict[str, bytes]
    val_texts: list[str]
    counts: dict[str, int]
    docs: int
    languages: list[tuple[str, str, int, int]]


_worker: dict = {}


def _init_worker(setup: tuple[str, bool, str, str, int, int], encode=None) -> None:
    """Set up this process's encoder, built here unless given. Workers forked from the process
    that called `encode_shards` inherit its set-up and skip the rebuild."""
    if _worker.get("setup") == setup:
        return
    tokenizer_path, use_tiktoken, documents_path, dtype, bos, eos = setup
    if encode is None:
        tok = load_tokenizer(Path(tokenizer_path))
        encode = fast_encoder(tok) if use_tiktoken else _hf_encoder(tok)
    _worker.clear()
    _worker.update(setup=setup, encode=encode, path=Path(documents_path), dtype=np.dtype(dtype),
                   head=np.array([bos], dtype=np.uint32), tail=np.array([eos], dtype=np.uint32))


def _encode_batch(task: tuple[int, list[bytes], np.ndarray]) -> _Encoded:
    start, lines, is_val = task
    w = _worker
    records = [document_record(line, w["path"], start + i + 1) for i, line in enumerate(lines)]
    texts = [text for text, _ in records]
    pieces: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    counts = _zero_counts()
    languages = []
    for (text, lang), ids, val in zip(records, w["encode"](texts), is_val):
        split = "val" if val else "train"
        pieces[split] += (w["head"], ids, w["tail"])
        n_bytes = len(text.encode("utf-8"))
        counts[f"{split}_tokens"] += len(ids) + 2
        counts[f"{split}_docs"] += 1
        counts[f"{split}_bytes"] += n_bytes
        languages.append((split, lang, len(ids) + 2, n_bytes))
    tokens = {split: np.concatenate(parts).astype(w["dtype"]).tobytes() if parts else b""
              for split, parts in pieces.items()}
    return _Encoded(tokens, [t for t, val in zip(texts, is_val) if val], counts, len(lines), languages)


def encode_shards(tokenizer_dir: Path, documents_path: Path, out_dir: Path, *, val_fraction: float,
                  seed: int, workers: int | None = None, extra_train: list[str] = ()) -> dict:
    """Write train.bin, val.bin, val.txt and meta.json to `out_dir`; return the meta dict.

    extra_train: documents appended to the training split only (canaries)."""
    documents_path, out_dir = Path(documents_path), Path(out_dir)
    tok_file = tokenizer_file(tokenizer_dir)
    tok = load_tokenizer(tok_file)
    ids = special_ids(tok)
    vocab = tok.get_vocab_size()
    dtype = np.uint16 if vocab <= 65535 else np.uint32
    n_docs = _count_lines(documents_path) if documents_path.is_file() else 0
    if n_docs < 2:
        raise UserError(f"{documents_path}: need at least 2 documents to split train/validation, "
                        f"found {n_docs}")
    is_val = np.zeros(n_docs, dtype=bool)
    is_val[validation_indices(n_docs, val_fraction, seed)] = True
    # tiktoken when it can express the tokenizer and gives the same ids on the first documents
    fast, hf = fast_encoder(tok), _hf_encoder(tok)
    sample = list(islice(iter_texts(documents_path), _CHECK_DOCS))
    use_tiktoken = fast is not None and all(map(np.array_equal, fast(sample), hf(sample)))
    workers = min(workers or os.cpu_count() or 1, -(-n_docs // _BATCH_DOCS))
    counts = _zero_counts()
    runs = {"train": LanguageRuns(), "val": LanguageRuns()}
    per_language: dict[str, dict[str, int]] = {}

    progress = bar(total=n_docs, desc="encode", unit="doc")
    with atomic_path(out_dir / TRAIN_BIN) as train_tmp, atomic_path(out_dir / VAL_BIN) as val_tmp, \
            atomic_path(out_dir / VAL_TEXT) as txt_tmp, open(train_tmp, "wb") as train_f, \
            open(val_tmp, "wb") as val_f, open(txt_tmp, "w", encoding="utf-8", newline="") as txt_f:
        files = {"train": train_f, "val": val_f}
        setup = (str(tok_file), use_tiktoken, str(documents_path), np.dtype(dtype).name, ids["bos"], ids["eos"])
        _init_worker(setup, fast if use_tiktoken else hf)    # before the workers fork: they inherit it
        separator = ""
        batches = _line_batches(documents_path, is_val)
        for part in ordered_map(_encode_batch, batches, workers, _init_worker, (setup,)):
            for split, data in part.tokens.items():
                files[split].write(data)
            for text in part.val_texts:
                txt_f.write(separator + text)
                separator = "\n\n"
            for key, n in part.counts.items():
                counts[key] += n
            for split, lang, n_tokens, n_bytes in part.languages:
                runs[split].add(lang, n_tokens)
                c = per_language.setdefault(lang, _zero_counts())
                c[f"{split}_tokens"] += n_tokens
                c[f"{split}_docs"] += 1
                c[f"{split}_bytes"] += n_bytes
            progress.update(part.docs)
        progress.close()
        if extra_train:
            encoded = _hf_encoder(tok)(list(extra_train))
            n_extra = sum(len(x) + 2 for x in encoded)
            if n_extra > counts["train_tokens"]:
                raise UserError(f"data.canaries: the canaries take {n_extra:,} tokens, more than the "
                                f"{counts['train_tokens']:,} of the training split; insert fewer or add data")
            bos, eos = np.array([ids["bos"]], dtype=np.uint32), np.array([ids["eos"]], dtype=np.uint32)
            train_f.write(np.concatenate([p for x in encoded for p in (bos, x, eos)]).astype(dtype).tobytes())
            counts["train_tokens"] += n_extra
            counts["inserted_docs"], counts["inserted_tokens"] = len(encoded), n_extra
            # sampled as part of the training split's largest language
            runs["train"].add(max(per_language, key=lambda lang: per_language[lang]["train_tokens"]), n_extra)

    if set(per_language) - {UNDETERMINED}:      # a multilingual (or declared-language) corpus
        write_languages(out_dir / LANGUAGES_FILE, per_language, runs["train"], runs["val"])
    else:
        (out_dir / LANGUAGES_FILE).unlink(missing_ok=True)

    meta = {"dtype": np.dtype(dtype).name, "vocab_size": vocab, "bos_id": ids["bos"], "eos_id": ids["eos"],
            "pad_id": ids["pad"], **counts, "seed": seed, "val_fraction": val_fraction,
            "encoder": "tiktoken" if use_tiktoken else "tokenizers",
            "tokenizer_sha256": hashlib.sha256(tok_file.read_bytes()).hexdigest(),
            "documents": str(documents_path), "languages": sorted(per_language)}
    write_json(out_dir / META, meta)
    return meta


def read_shards(tokens_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train tokens, validation tokens, meta) of a tokens/ directory, memory-mapped."""
    tokens_dir = Path(tokens_dir)
    meta_path = tokens_dir / META
    if not meta_path.is_file():
        raise UserError(f"no token shards in {tokens_dir} ({META} missing); run `lmforge prepare` on the run")
    meta = json.loads(meta_path.read_text())
    dtype = np.dtype(meta["dtype"])
    return (np.memmap(tokens_dir / TRAIN_BIN, dtype=dtype, mode="r"),
            np.memmap(tokens_dir / VAL_BIN, dtype=dtype, mode="r"), meta)
