"""The data pipeline: sources -> steps -> documents.jsonl, removed.jsonl, stats.json, data_card.md.

Work is split by input unit (a file, a module, a start URL). Worker processes read units and
run every step on their documents; the main process receives results in input order, lets
the deduplication steps decide, and streams the kept documents to disk. Memory stays nearly
flat: only a few units are in flight at once; the dedup state grows by one hash per distinct
document (~70 bytes) and, with MinHash, its band index (~300 bytes per kept document).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from lmforge.atomic import atomic_path, write_json, write_text
from lmforge.data.config import DataConfig
from lmforge.data.datacard import data_card
from lmforge.data.document import Document, doc_id
from lmforge.data.extract import Skip
from lmforge.data.sources import Source
from lmforge.data.stats import OutputStats, StepStats, utf8_len
from lmforge.data.registry import build_steps
from lmforge.data.steps import GlobalStep, Record, Step
from lmforge.errors import UserError
from lmforge.parallel import ordered_map
from lmforge.progress import bar

_worker: dict = {}


def _init_worker(cfg: DataConfig, seed: int) -> None:
    _worker["cfg"] = cfg
    _worker["sources"] = [Source(s) for s in cfg.sources]
    _worker["steps"] = build_steps(cfg, seed)


def _run_steps(doc: Document, steps: list[Step]):
    """Run every step on one document; return (doc, trace, removal reason or "").

    The trace holds (bytes in, bytes out, counts, key) per step reached, so the main
    process can settle dedup decisions and count statistics exactly as a sequential run."""
    trace = []
    for step in steps:
        rec = Record()
        size_in = utf8_len(doc.text)
        result = step.apply(doc, rec)
        if result is None:
            trace.append((size_in, 0, rec.counts, rec.key))
            doc.text = ""        # the removal log needs the id and path, not the text
            return doc, trace, rec.reason or "removed"
        doc = result
        trace.append((size_in, utf8_len(doc.text), rec.counts, rec.key))
    return doc, trace, ""


def _process_unit(task: tuple[int, str]) -> list[tuple]:
    """Read one unit and clean its documents (in a worker process)."""
    src_index, unit = task
    source = _worker["sources"][src_index]
    label = source.cfg.label()
    retrieved_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out: list[tuple] = []
    try:
        for n, (location, text) in enumerate(source.read(unit)):
            if isinstance(text, Skip):
                out.append(("skip", src_index, location, str(text)))
                continue
            doc = Document(doc_id(label, location, n), text, label, location, source.licence, retrieved_at,
                           {"language": source.cfg.language} if source.cfg.language else {})
            size = utf8_len(text)
            out.append(("doc", src_index, size, *_run_steps(doc, _worker["steps"])))
    except Skip as e:
        out.append(("skip", src_index, unit, str(e)))
    except (OSError, UnicodeError) as e:
        out.append(("skip", src_index, unit, f"unreadable: {e}"))
    return out


def fingerprint(cfg: DataConfig, shard: tuple[int, int] | None, seed: int) -> str:
    blob = json.dumps([dataclasses.asdict(cfg), list(shard) if shard else None, seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_pipeline(cfg: DataConfig, out_dir: Path, *, workers: int | None = None,
                 shard: tuple[int, int] | None = None, seed: int = 0) -> dict:
    """Collect and clean documents into `out_dir`; return the statistics.

    With shard=(i, n) only every n-th input unit starting at i is processed, so n jobs
    (a Slurm array) cover the corpus; `merge_shards` joins their outputs. A run whose
    out_dir already holds complete outputs for the same recipe, shard and seed is not
    redone, so a re-submitted array job only reruns the shards that did not finish.
    """
    out_dir = Path(out_dir)
    fp = fingerprint(cfg, shard, seed)
    done = _completed(out_dir, fp)
    if done is not None:
        return done
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise UserError(f"shard {shard[0]}/{shard[1]}: need 0 <= index < count")
    (out_dir / "stats.json").unlink(missing_ok=True)    # outputs of an older run are not complete any more
    start = time.time()
    workers = workers or os.cpu_count() or 1
    sources = [Source(s) for s in cfg.sources]
    tasks = [(i, unit) for i, src in enumerate(sources) for unit in src.units()]
    if shard is not None:
        tasks = tasks[shard[0]::shard[1]]
    steps = build_steps(cfg, seed)    # the main process's copies make the dedup decisions
    step_stats = [StepStats(s.name) for s in steps]
    output = OutputStats()
    per_source = [{"kind": s.cfg.kind, "path": s.cfg.path, "licence": s.licence, "units": 0,
                   "docs_read": 0, "bytes_read": 0, "skipped_inputs": 0} for s in sources]
    for i, _ in tasks:
        per_source[i]["units"] += 1
    removed_by: Counter[str] = Counter()
    skipped: list[dict] = []

    with atomic_path(out_dir / "documents.jsonl") as docs_tmp, \
            atomic_path(out_dir / "removed.jsonl") as removed_tmp, \
            open(docs_tmp, "w", encoding="utf-8") as docs_f, \
            open(removed_tmp, "w", encoding="utf-8") as removed_f:
        progress = bar(total=len(tasks), desc="data", unit="input")
        full: set[int] = set()
        # units of sources that reached max_docs (`full`, filled below) are not read
        units = (t for t in tasks if t[0] not in full)
        results = ordered_map(_process_unit, units, min(workers, len(tasks)), _init_worker, (cfg, seed))
        for unit_result in results:
            progress.update(1)
            for item in unit_result:
                if item[0] == "skip":
                    _, src_index, location, reason = item
                    per_source[src_index]["skipped_inputs"] += 1
                    if len(skipped) < 200:          # all of them are in removed.jsonl
                        skipped.append({"source": sources[src_index].cfg.label(), "path": location,
                                        "reason": reason})
                    removed_f.write(json.dumps({"id": None, "source": sources[src_index].cfg.label(),
                                                "path": location, "step": "extract",
                                                "reason": reason}, ensure_ascii=False) + "\n")
                    continue
                _, src_index, size, doc, trace, reason = item
                src = per_source[src_index]
                if cfg.max_docs and src["docs_read"] >= cfg.max_docs:
                    full.add(src_index)
                    continue
                src["docs_read"] += 1
                src["bytes_read"] += size
                verdict = _settle(doc, trace, reason, steps, step_stats)
                if verdict is None:
                    row = doc.to_json()
                    docs_f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    output.add(row)
                else:
                    step_name, why, removed_id, path = verdict
                    removed_by[step_name] += 1
                    removed_f.write(json.dumps({"id": removed_id, "source": sources[src_index].cfg.label(),
                                                "path": path, "step": step_name, "reason": why},
                                               ensure_ascii=False) + "\n")
        progress.close()
        _check_outcome(sources, per_source, output, removed_by)

    elapsed = time.time() - start
    read_bytes = sum(s["bytes_read"] for s in per_source)
    stats = {
        "fingerprint": fp, "shard": list(shard) if shard else None, "seed": seed, "workers": workers,
        "elapsed_s": round(elapsed, 2), "mb_per_s": round(read_bytes / 1e6 / max(elapsed, 1e-9), 2),
        "steps_run": list(cfg.steps),
        "sources": {s.cfg.label(): per_source[i] for i, s in enumerate(sources)},
        "steps": [st.to_dict(step.summary() if isinstance(step, GlobalStep) else {})
                  for st, step in zip(step_stats, steps)],
        "removed_by_step": dict(removed_by.most_common()),
        "pii": _pii_counts(step_stats),
        "output": output.to_dict(),
        "skipped_inputs": skipped,
    }
    write_text(out_dir / "data_card.md", data_card(stats, cfg))
    write_json(out_dir / "stats.json", stats)       # last: its presence marks the run complete
    return stats


def _settle(doc: Document, trace, reason: str, steps: list[Step],
            step_stats: list[StepStats]) -> tuple[str, str, str, str] | None:
    """Walk one document's trace in step order; return None if kept, else (step, reason, id, path)."""
    for i, (size_in, size_out, counts, key) in enumerate(trace):
        st = step_stats[i]
        st.docs_in += 1
        st.bytes_in += size_in
        if counts:                  # most steps count nothing, and Counter.update is not free
            st.counts.update(counts)
        step = steps[i]
        if isinstance(step, GlobalStep):
            why = step.decide(key, None if reason else doc)
            if why:
                return step.name, why, doc.id, doc.path
        if reason and i == len(trace) - 1:
            return step.name, reason, doc.id, doc.path
        st.docs_out += 1
        st.bytes_out += size_out
    return None


def _pii_counts(step_stats: list[StepStats]) -> dict:
    for st in step_stats:
        if st.name == "pii":
            return dict(st.counts)
    return {}


def _check_outcome(sources: list[Source], per_source: list[dict], output: OutputStats,
                   removed_by: Counter) -> None:
    for src, st in zip(sources, per_source):
        if st["units"] and st["docs_read"] == 0:
            raise UserError(f"source '{src.cfg.label()}' ({src.cfg.path or src.cfg.kind}) yielded no documents"
                            + (f"; {st['skipped_inputs']} inputs skipped, see the reasons in removed.jsonl"
                               if st["skipped_inputs"] else ""))
    if output.docs == 0:
        total = sum(removed_by.values())
        step, n = removed_by.most_common(1)[0] if removed_by else ("(none)", 0)
        raise UserError(f"the data pipeline removed all {total} documents; step '{step}' removed the "
                        f"most ({n}): relax its options in the [data] section of the recipe")


def _completed(out_dir: Path, fp: str) -> dict | None:
    path = out_dir / "stats.json"
    if not (path.is_file() and (out_dir / "documents.jsonl").is_file()):
        return None
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return stats if stats.get("fingerprint") == fp else None
