"""Small per-machine measurements kept between runs, in ~/.cache/lmforge (or $XDG_CACHE_HOME/lmforge):
the matmul peak behind MFU, and the compile decisions of `train.compile = "auto"`.

A missing, unreadable or read-only cache only costs a new measurement."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from lmforge.atomic import write_json


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmforge"


def machine_key(*parts) -> str:
    """A key for a measurement on this machine, at this thread count, with these settings."""
    return "|".join(str(p) for p in (platform.node(), platform.processor(), torch.get_num_threads(), *parts))


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
