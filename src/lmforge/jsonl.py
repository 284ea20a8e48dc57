"""Reading JSON Lines files the way every user file is read: blank lines skipped, a line that is
not JSON an error naming the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from lmforge.errors import UserError


def numbered_rows(lines: Iterable[str], path: Path | str) -> Iterator[tuple[int, object]]:
    """(line number from 1, parsed value) for each non-blank line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: invalid JSON ({e.msg})") from None
