"""Benchmark the data pipeline and shard encoding on a synthetic corpus.

    python bench/data_pipeline.py --size-mb 200 [--workers N] [--keep DIR]

Builds jsonl files of English-like text (Zipf word frequencies, ~5% exact and ~5% near
duplicates, some e-mail addresses and phone numbers), then measures in one run:
the parallel pipeline without and with MinHash, a naive single-process run on a slice,
tokenizer shard encoding against per-document encoding, and the peak memory. The last
line printed is one JSON object. Throughput is given per wall-clock second and per CPU-second
(all processes): on a shared machine the second one is the cost of the code itself.
Memory is also sampled during each measured run (this process and its workers together):
`memory_mb_quarters` holds the peak of each quarter of the run, so growth with the corpus
shows within one run as well as between a small and a large one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from lmforge.data.config import DataConfig, SourceConfig
from lmforge.data.pipeline import run_pipeline
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.load import load_tokenizer
from lmforge.tokenizer.shards import encode_shards
from lmforge.tokenizer.train import iter_texts, train_tokenizer

FILE_MB = 16
STEPS = ["normalize", "quality", "exact_dedup", "pii"]


def make_corpus(root: Path, size_mb: float, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    syllables = ["ka", "to", "ri", "an", "el", "mo", "su", "ne", "la", "di", "or", "pe", "the", "and", "of", "to"]
    vocab = ["the", "of", "and", "to", "a", "in", "is", "that", "with", "have", "be"] + [
        "".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(20_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    files, recent = [], []
    remaining = size_mb * 1e6
    index = 0
    while remaining > 0:
        path = root / f"part-{len(files):05d}.jsonl"
        written = 0
        with open(path, "w", encoding="utf-8") as f:
            while written < FILE_MB * 1e6 and remaining - written > 0:
                roll = rng.random()
                if recent and roll < 0.05:
                    text = recent[rng.integers(len(recent))]                       # exact duplicate
                elif recent and roll < 0.10:
                    words = recent[rng.integers(len(recent))].split(" ")
                    words[rng.integers(len(words))] = "changed"                   # near duplicate
                    text = " ".join(words)
                else:
                    words = [vocab[i] for i in rng.choice(len(vocab), size=int(rng.integers(100, 1200)), p=weights)]
                    lines = [" ".join(words[i:i + 14]) + "." for i in range(0, len(words), 14)]
                    if roll < 0.2:
                        lines.append(f"Contact user{index}@example.com or +1 415 555 {index % 10000:04d}.")
                    text = "\n".join(lines)
                    recent = (recent + [text])[-200:]
                line = json.dumps({"text": text}) + "\n"
                f.write(line)
                written += len(line)
                index += 1
        remaining -= written
        files.append(path)
    return files


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def memory_mb() -> float:
    """Memory of this process and its children now: their proportional set sizes (shared pages
    split among the processes sharing them, so forked workers are not counted twice), from
    Linux's /proc; 0 elsewhere."""
    pids = [str(os.getpid())]
    try:
        for task in Path("/proc/self/task").iterdir():
            pids += (task / "children").read_text().split()
    except OSError:
        pass                                  # no /proc, or a kernel without the children files
    kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                kb += next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
        except OSError:
            pass                              # a worker that just exited
    return kb / 1024


class MemoryTrace:
    """Samples memory_mb() in a thread while the `with` block runs."""

    def __init__(self, every_s: float = 0.25):
        self.every_s, self.samples = every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append(memory_mb())
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> MemoryTrace:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def quarters(self) -> list[float]:
        """The peak of each quarter of the run, in MB."""
        n = len(self.samples)
        bounds = [i * n // 4 for i in range(5)]
        return [round(max(self.samples[a:max(b, a + 1)]), 1) for a, b in zip(bounds, bounds[1:])]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pipeline's worker pool)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_pipeline(corpus: Path, out: Path, steps: list[str], workers: int, pattern: str = "*.jsonl"):
    """(MB/s of wall time, MB per CPU-second, stats, peak memory per quarter of the run).
    On a shared machine the second number says what the code costs, whatever else is running."""
    cfg = DataConfig(sources=[SourceConfig(kind="files", path=str(corpus / pattern), name="synthetic")],
                     steps=steps)
    shutil.rmtree(out, ignore_errors=True)      # run_pipeline would return an earlier --keep run's outputs
    start, cpu = time.perf_counter(), cpu_seconds()
    with MemoryTrace() as memory:
        stats = run_pipeline(cfg, out, workers=workers)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    mb = sum(s["bytes_read"] for s in stats["sources"].values()) / 1e6
    return mb / elapsed, mb / cpu, stats, memory.quarters()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=300)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--keep", type=Path, help="build the corpus and outputs here and keep them")
    args = ap.parse_args()
    os.environ.setdefault("LMFORGE_NO_PROGRESS", "1")
    root = args.keep or Path(tempfile.mkdtemp(prefix="lmforge-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        if (root / "corpus").is_dir():          # --keep: reuse the corpus of an earlier run
            files = sorted((root / "corpus").glob("*.jsonl"))
        else:
            (root / "corpus").mkdir()
            files = make_corpus(root / "corpus", args.size_mb)
        print(f"corpus: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.0f} MB "
              f"in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

        fast, fast_cpu, stats, memory_plain = timed_pipeline(root / "corpus", root / "plain", STEPS, args.workers)
        print(f"pipeline: {fast:.2f} MB/s, kept {stats['output']['documents']} docs", file=sys.stderr)
        fast_mh, fast_mh_cpu, stats_mh, memory_mh = timed_pipeline(root / "corpus", root / "minhash",
                                                                   STEPS + ["minhash"], args.workers)
        print(f"pipeline + minhash: {fast_mh:.2f} MB/s, minhash removed "
              f"{stats_mh['removed_by_step'].get('minhash', 0)}", file=sys.stderr)
        naive, naive_cpu, _, _ = timed_pipeline(root / "corpus", root / "naive", STEPS, 1, pattern="part-00000.jsonl")
        print(f"single process: {naive:.2f} MB/s", file=sys.stderr)

        docs = root / "plain" / "documents.jsonl"
        train_tokenizer(TokenizerConfig(vocab_size=8192, max_train_mb=20), docs, root / "tok")
        doc_mb = sum(len(t.encode()) for t in iter_texts(docs)) / 1e6
        start, cpu = time.perf_counter(), cpu_seconds()
        with MemoryTrace() as memory:
            meta = encode_shards(root / "tok", docs, root / "tokens", val_fraction=0.01, seed=0, workers=args.workers)
        encode, encode_cpu = doc_mb / (time.perf_counter() - start), doc_mb / (cpu_seconds() - cpu)
        tok = load_tokenizer(root / "tok")
        sample = [t for _, t in zip(range(2000), iter_texts(docs))]
        start = time.perf_counter()
        for text in sample:
            tok.encode(text, add_special_tokens=False)
        naive_encode = sum(len(t.encode()) for t in sample) / 1e6 / (time.perf_counter() - start)
        print(f"encode: {encode:.2f} MB/s (one document at a time: {naive_encode:.2f} MB/s)", file=sys.stderr)

        print(json.dumps({
            "size_mb": round(args.size_mb), "workers": args.workers,
            "mb_per_s_no_minhash": round(fast, 2), "mb_per_s_minhash": round(fast_mh, 2),
            "mb_per_cpu_s_no_minhash": round(fast_cpu, 2), "mb_per_cpu_s_minhash": round(fast_mh_cpu, 2),
            "naive_mb_per_cpu_s": round(naive_cpu, 2), "load_average_1m": round(os.getloadavg()[0], 1),
            "naive_single_process_mb_per_s": round(naive, 2),
            "parallel_vs_naive": round(fast / naive, 2),
            "encode_mb_per_s": round(encode, 2), "encode_mb_per_cpu_s": round(encode_cpu, 2),
            "naive_encode_mb_per_s": round(naive_encode, 2),
            "encode_vs_naive": round(encode / naive_encode, 2), "encoder": meta["encoder"],
            "kept_docs": stats["output"]["documents"], "minhash_removed": stats_mh["removed_by_step"].get("minhash", 0),
            "peak_rss_mb": peak_rss_mb(),
            "memory_mb_quarters": {"pipeline": memory_plain, "pipeline_minhash": memory_mh,
                                   "encode": memory.quarters()},
        }))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
