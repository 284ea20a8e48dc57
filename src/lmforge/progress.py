"""Progress bars with rate and ETA for every long step (tqdm underneath).

Bars go to stderr and switch themselves off when LMFORGE_NO_PROGRESS=1 is set,
which keeps test and CI logs readable.
"""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("LMFORGE_NO_PROGRESS", "") not in ("1", "true", "yes")


def bar(iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str = "",
        unit: str = "it", unit_scale: bool = False, **kwargs) -> tqdm:
    """A tqdm bar (usable as an iterator or updated by hand with `.update(n)`)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                disable=not enabled(), dynamic_ncols=True, leave=False, **kwargs)
