"""Encode cleaned documents into flat token files (train.bin, val.bin) that training memory-maps.

Each document becomes [BOS] + ids + [EOS]. The split is by document, fixed by the seed,
and always holds out at least one validation document. Documents are encoded in batches on
all cores in Rust: with tiktoken when the tokenizer allows it (see fast.py), otherwise with
`Tokenizer.encode_batch_fast`.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from lmforge.atomic import atomic_path, write_json
from lmforge.errors import UserError
from lmforge.progress import bar
from lmforge.tokenizer.fast import fast_encoder
from lmforge.tokenizer.load import load_tokenizer, special_ids, tokenizer_file
from lmforge.tokenizer.train import iter_texts

_BATCH_DOCS = 512
_CHECK_DOCS = 32


Encode = Callable[[list[str]], list[np.ndarray]]


def _choose_encoder(tok, sample: list[str], pool: ThreadPoolExecutor, threads: int) -> tuple[Encode, str]:
    """tiktoken, on `threads` threads of `pool`, when it gives the same ids as tokenizers on
    `sample`; else tokenizers (which has its own Rust thread pool)."""
    def hf_encode(batch: list[str]) -> list[np.ndarray]:
        return [np.array(e.ids, dtype=np.uint32) for e in tok.encode_batch_fast(batch, add_special_tokens=False)]

    fast = fast_encoder(tok)
    if fast is None or not all(map(np.array_equal, fast(sample), hf_encode(sample))):
        return hf_encode, "tokenizers"

    def parallel_encode(texts: list[str]) -> list[np.ndarray]:
        # one task per thread, not per text; interleaved parts hold about as much text each
        out: list[np.ndarray] = [None] * len(texts)
        for i, part in enumerate(pool.map(fast, [texts[i::threads] for i in range(threads)])):
            out[i::threads] = part
        return out

    return (parallel_encode if threads > 1 else fast), "tiktoken"


def _encoded(encode: Encode, batches: Iterable[list[str]]) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """(batch, ids) in order; each batch is encoded in a thread while the caller writes the one
    before and reads the one after."""
    with ThreadPoolExecutor(1) as ahead:
        pending = None
        for batch in batches:
            job = ahead.submit(encode, batch)
            if pending:
                yield pending[0], pending[1].result()
            pending = batch, job
        if pending:
            yield pending[0], pending[1].result()


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            n += block.count(b"\n")
    return n


def _validation_indices(n_docs: int, val_fraction: float, seed: int) -> np.ndarray:
    """A sorted random subset of document indices: at least one, at most n_docs - 1."""
    n_val = min(n_docs - 1, max(1, round(n_docs * val_fraction)))
    return np.sort(np.random.default_rng(seed).choice(n_docs, size=n_val, replace=False))


def encode_shards(tokenizer_dir: Path, documents_path: Path, out_dir: Path, *, val_fraction: float,
                  seed: int, workers: int | None = None) -> dict:
    """Write train.bin, val.bin, val.txt and meta.json to `out_dir`; return the meta dict."""
    if workers:
        # Size of the Rust thread pool; read once, when the first batch is encoded.
        os.environ.setdefault("RAYON_NUM_THREADS", str(workers))
    documents_path, out_dir = Path(documents_path), Path(out_dir)
    tok = load_tokenizer(tokenizer_dir)
    ids = special_ids(tok)
    vocab = tok.get_vocab_size()
    dtype = np.uint16 if vocab <= 65535 else np.uint32
    n_docs = _count_lines(documents_path) if documents_path.is_file() else 0
    if n_docs < 2:
        raise UserError(f"{documents_path}: need at least 2 documents to split train/validation, "
                        f"found {n_docs}")
    is_val = np.zeros(n_docs, dtype=bool)
    is_val[_validation_indices(n_docs, val_fraction, seed)] = True
    bos, eos = ids["bos"], ids["eos"]
    counts = {"train_tokens": 0, "val_tokens": 0, "train_docs": 0, "val_docs": 0,
              "train_bytes": 0, "val_bytes": 0}

    texts = iter_texts(documents_path)
    first = list(islice(texts, _BATCH_DOCS))
    threads = workers or os.cpu_count() or 1
    batches = chain([first], iter(lambda: list(islice(texts, _BATCH_DOCS)), []))
    progress = bar(total=n_docs, desc="encode", unit="doc")
    with ThreadPoolExecutor(threads) as pool, atomic_path(out_dir / "train.bin") as train_tmp, \
            atomic_path(out_dir / "val.bin") as val_tmp, atomic_path(out_dir / "val.txt") as txt_tmp, \
            open(train_tmp, "wb") as train_f, open(val_tmp, "wb") as val_f, \
            open(txt_tmp, "w", encoding="utf-8", newline="") as txt_f:
        encode, encoder = _choose_encoder(tok, first[:_CHECK_DOCS], pool, threads)
        files = {"train": train_f, "val": val_f}
        head, tail = np.array([bos], dtype=np.uint32), np.array([eos], dtype=np.uint32)
        index = 0
        for batch, encoded in _encoded(encode, batches):
            pieces: dict[str, list[np.ndarray]] = {"train": [], "val": []}
            for text, ids_ in zip(batch, encoded):
                split = "val" if is_val[index] else "train"
                pieces[split] += (head, ids_, tail)
                if split == "val":
                    txt_f.write(("\n\n" if counts["val_docs"] else "") + text)
                counts[f"{split}_tokens"] += len(ids_) + 2
                counts[f"{split}_docs"] += 1
                counts[f"{split}_bytes"] += len(text.encode("utf-8"))
                index += 1
            for split, parts in pieces.items():     # one write per batch and file
                if parts:
                    files[split].write(np.concatenate(parts).astype(dtype).tobytes())
            progress.update(len(batch))
        progress.close()

    meta = {"dtype": np.dtype(dtype).name, "vocab_size": vocab, "bos_id": bos, "eos_id": eos,
            "pad_id": ids["pad"], **counts, "seed": seed, "val_fraction": val_fraction, "encoder": encoder,
            "tokenizer_sha256": hashlib.sha256(tokenizer_file(tokenizer_dir).read_bytes()).hexdigest(),
            "documents": str(documents_path)}
    write_json(out_dir / "meta.json", meta)
    return meta
