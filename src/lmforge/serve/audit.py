"""The audit log: one SQLite row per API request.

It records who (a hash of the API key, never the key), what (endpoint, status,
token counts) and when, and optionally a SHA-256 of the prompt, so usage can be
reviewed and a given prompt can be matched later without storing its text.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,            -- unix seconds
    key_id TEXT,                   -- sha256(api key)[:16], NULL without keys
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    prompt_sha256 TEXT             -- only with audit_hash_prompts
)
"""


def prompt_digest(prompt) -> str:
    """SHA-256 of a text prompt's UTF-8 bytes; of compact, key-sorted JSON for token ids and messages,
    so anyone holding the prompt can compute the same digest."""
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True,
                                                            separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AuditLog:
    def __init__(self, path: str | Path, hash_prompts: bool = False):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.hash_prompts = hash_prompts
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)
        self.lock = threading.Lock()

    def record(self, *, key_id: str | None, endpoint: str, status: int, prompt_tokens: int | None,
               completion_tokens: int | None, latency_s: float, prompt_sha256: str | None) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO requests (time, key_id, endpoint, status, prompt_tokens, completion_tokens,"
                " latency_s, prompt_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), key_id, endpoint, status, prompt_tokens, completion_tokens, latency_s,
                 prompt_sha256 if self.hash_prompts else None))

    def close(self) -> None:
        with self.lock:
            self.db.close()
