"""The data card: a Datasheet for Datasets (Gebru et al. 2021) written from real statistics.

Every number comes from stats.json; sections whose answer only a person can give
(motivation, intended uses) say so and give the facts lmforge knows.
"""

from __future__ import annotations

from lmforge.data.config import DataConfig

_SOURCE_TEXT = {
    "python_docs": "the documentation that ships with the Python interpreter (pydoc topics and the "
                   "docstrings of the standard library, read by parsing the source files, never importing them)",
    "python_source": "the source code of the Python standard library",
    "files": "local files",
    "url": "web pages fetched by lmforge's crawler (robots.txt honoured, one site, rate-limited)",
    "hf": "a Hugging Face dataset",
}


def length_histogram(stats: dict) -> tuple[list[int], list[int]]:
    """(bin_edges, counts) of kept-document lengths in bytes, empty bins at both ends trimmed."""
    hist = stats["output"]["length_histogram"]
    counts = hist["counts"]
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return [], []
    lo, hi = used[0], used[-1]
    return hist["bin_edges"][lo:hi + 2], counts[lo:hi + 1]


def _median_bin(edges: list[int], counts: list[int]) -> str:
    half, run = sum(counts) / 2, 0
    for i, c in enumerate(counts):
        run += c
        if run >= half:
            return f"{edges[i]:,}-{edges[i + 1]:,}"
    return "n/a"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def data_card(stats: dict, cfg: DataConfig) -> str:
    out = stats["output"]
    steps = stats["steps"]
    read_docs = sum(s["docs_read"] for s in stats["sources"].values())
    read_bytes = sum(s["bytes_read"] for s in stats["sources"].values())
    kinds = sorted({s["kind"] for s in stats["sources"].values()})
    lines = ["# Data card", "",
             f"{out['documents']:,} documents ({_mb(out['bytes'])} of UTF-8 text) kept from "
             f"{read_docs:,} read ({_mb(read_bytes)}).", ""]

    lines += ["## Motivation", "",
              "Built with lmforge to train a language model. The purpose, the people who asked for it "
              "and its funding are for the dataset's owner to state here.", ""]

    lines += ["## Composition", ""]
    lines += _table(["source", "kind", "location", "licence", "inputs", "documents read", "bytes read",
                     "inputs skipped", "documents kept"],
                    [[name, s["kind"], s["path"] or "built in", s["licence"] or "unspecified", s["units"],
                      f"{s['docs_read']:,}", f"{s['bytes_read']:,}", s["skipped_inputs"],
                      f"{out['sources'].get(name, 0):,}"] for name, s in stats["sources"].items()])
    edges, counts = length_histogram(stats)
    lines += ["", f"Document length: min {out['min_bytes']:,} B, mean {out['mean_bytes']:,} B, "
              f"max {out['max_bytes']:,} B, median in the {_median_bin(edges, counts)} B bin.", ""]
    lines += ["Licences of kept documents: " + ", ".join(f"{k} ({v:,})" for k, v in out["licences"].items()),
              "", "Languages of kept documents: " + ", ".join(f"{k} ({v:,})" for k, v in out["languages"].items())
              + ("" if "langid" in stats["steps_run"] or "not identified" not in out["languages"]
                 else " (the langid step was not run)"), ""]
    if stats["pii"]:
        lines += ["Personal data found and replaced by placeholders: "
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(stats["pii"].items())) + ".", ""]
    elif "pii" in stats["steps_run"]:
        lines += ["The PII step found no e-mail addresses, phone numbers, public IP addresses, card "
                  "numbers, IBANs or secrets.", ""]
    else:
        lines += ["**Personal data was not searched for** (the pii step was not run).", ""]

    lines += ["## Collection process", "",
              "Sources: " + "; ".join(f"{k}: {_SOURCE_TEXT[k]}" for k in kinds) + ".",
              "Each document records its source, path or URL, licence and retrieval time in documents.jsonl.",
              f"Inputs that gave no text ({len(stats['skipped_inputs'])} logged) are listed in removed.jsonl "
              "with step 'extract' and the reason.", ""]

    lines += ["## Preprocessing and cleaning", "",
              "Steps, in order (documents and bytes in and out; details in stats.json, every removal with "
              "its reason in removed.jsonl):", ""]
    lines += _table(["step", "docs in", "docs out", "removed", "bytes in", "bytes out", "notes"],
                    [[s["name"], f"{s['docs_in']:,}", f"{s['docs_out']:,}", f"{s['removed']:,}",
                      f"{s['bytes_in']:,}", f"{s['bytes_out']:,}", _notes(s)] for s in steps])
    lines += [""]

    lines += ["## Uses", "",
              "Intended for language-model pretraining with lmforge. Text is kept with its original case, "
              "stop words and inflections" + (" except where the nlp step changed them" if "nlp" in cfg.steps
                                              else "") + ".",
              "Check the licences above before training a model you distribute; evaluation sets named in "
              "[data.decontaminate] were " + ("removed by 13-gram overlap" if "decontaminate" in cfg.steps
                                              else "**not** checked for overlap") + ".", ""]
    lines += ["## Distribution", "",
              "documents.jsonl holds the cleaned text with provenance; redistribution follows the licence of "
              "each source listed under Composition.", ""]
    lines += ["## Maintenance", "",
              "Regenerate with the recipe in this run directory (`lmforge data`); the statistics in stats.json "
              f"identify this build (fingerprint {stats['fingerprint']}, seed {stats['seed']}).", ""]
    return "\n".join(lines)


def _notes(step: dict) -> str:
    parts = [f"{k} {v:,}" for k, v in step["counts"].items() if not k.startswith("lang:")][:8]
    for key in ("duplicate_clusters", "largest_cluster", "lines_removed"):
        if step.get(key):
            parts.append(f"{key.replace('_', ' ')} {step[key]:,}")
    return ", ".join(parts)
