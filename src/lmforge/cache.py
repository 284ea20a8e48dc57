"""Small per-machine measurements kept between runs, in ~/.cache/lmforge (or $XDG_CACHE_HOME/lmforge):
the matmul peak behind MFU, the compile decisions of `train.compile = "auto"` and the decode
weights of `--dtype auto`.

A missing, unreadable or read-only cache only costs a new measurement."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

from lmforge.atomic import write_json


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmforge"


def machine_key(*parts) -> str:
    """A key for a measurement on this machine, at this thread count, with these settings."""
    return "|".join(str(p) for p in (platform.node(), platform.processor(), torch.get_num_threads(), *parts))


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A short hash of lmforge's own source: measurements of lmforge's code (step times, decode
    speed) keyed on it are measured again after the code changes, not trusted stale."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha1()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def read_table(name: str) -> dict:
    try:
        return json.loads((cache_root() / name).read_text())
    except (OSError, ValueError):
        return {}


def write_entry(name: str, key: str, value) -> None:
    table = read_table(name)
    table[key] = value
    try:
        (cache_root() / name).parent.mkdir(parents=True, exist_ok=True)
        write_json(cache_root() / name, table)      # whole or not at all, even with several writers
    except OSError:
        pass
