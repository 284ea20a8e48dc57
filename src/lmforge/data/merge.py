"""Join the outputs of a sharded run (one directory per shard) into one data directory.

Exact duplicates across shards are removed here (by the sha256 of the cleaned text);
near-duplicates across shards are not (MinHash runs inside each shard).
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.atomic import atomic_path, write_json, write_text
from lmforge.data.config import DataConfig
from lmforge.data.datacard import data_card
from lmforge.data.stats import OutputStats, add_stats
from lmforge.errors import UserError


def merge_shards(out_dirs: list[Path], out_dir: Path, cfg: DataConfig | None = None) -> dict:
    out_dirs = [Path(d) for d in out_dirs]
    out_dir = Path(out_dir)
    shard_stats = []
    for d in out_dirs:
        if not (d / "stats.json").is_file():
            raise UserError(f"shard directory {d} is not complete (no stats.json): rerun that shard")
        shard_stats.append(json.loads((d / "stats.json").read_text(encoding="utf-8")))
    names = [[s["name"] for s in st["steps"]] for st in shard_stats]
    if any(n != names[0] for n in names):
        raise UserError("shards were cleaned with different step lists; rerun them with one recipe")

    seen: set[str] = set()
    output = OutputStats()
    cross_dups = dup_bytes = 0
    with atomic_path(out_dir / "documents.jsonl") as docs_tmp, \
            atomic_path(out_dir / "removed.jsonl") as removed_tmp, \
            open(docs_tmp, "w", encoding="utf-8") as docs_f, open(removed_tmp, "w", encoding="utf-8") as rem_f:
        for d in out_dirs:
            with open(d / "documents.jsonl", encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    if row["sha256"] in seen:
                        cross_dups += 1
                        dup_bytes += len(row["text"].encode("utf-8"))
                        rem_f.write(json.dumps({"id": row["id"], "source": row["source"], "path": row["path"],
                                                "step": "merge_exact_dedup",
                                                "reason": "exact duplicate in an earlier shard"}) + "\n")
                        continue
                    seen.add(row["sha256"])
                    docs_f.write(line)
                    output.add(row)
            with open(d / "removed.jsonl", encoding="utf-8") as f:
                for line in f:
                    rem_f.write(line)

    stats = {k: v for k, v in shard_stats[0].items() if k not in ("output", "steps")}
    for st in shard_stats[1:]:
        stats = add_stats(stats, {k: v for k, v in st.items()
                                  if k in ("sources", "removed_by_step", "pii", "skipped_inputs", "elapsed_s")})
    stats["steps"] = [_sum_steps([st["steps"][i] for st in shard_stats]) for i in range(len(names[0]))]
    stats["steps"].append({"name": "merge_exact_dedup", "docs_in": output.docs + cross_dups,
                           "docs_out": output.docs, "removed": cross_dups,
                           "bytes_in": output.bytes + dup_bytes,
                           "bytes_out": output.bytes, "counts": {}})
    if cross_dups:
        stats["removed_by_step"]["merge_exact_dedup"] = cross_dups
    stats["shard"] = None
    stats["merged_from"] = [str(d) for d in out_dirs]
    stats["fingerprint"] = "+".join(st["fingerprint"] for st in shard_stats)[:200]
    stats["output"] = output.to_dict()
    write_text(out_dir / "data_card.md", data_card(stats, cfg or DataConfig(steps=stats["steps_run"])))
    write_json(out_dir / "stats.json", stats)
    return stats


def _sum_steps(parts: list[dict]) -> dict:
    total = parts[0]
    for p in parts[1:]:
        total = add_stats(total, p)
    return total
