"""SQLite storage for the human-evaluation arena: prompts, cached answers, votes, ratings.

Answers are generated once per (model, prompt) and kept, so every rater judges the
same texts and a restart never regenerates (and silently changes) them.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS answers (prompt_id INTEGER NOT NULL, model TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (prompt_id, model));
CREATE TABLE IF NOT EXISTS votes (id INTEGER PRIMARY KEY, rater TEXT NOT NULL, prompt_id INTEGER NOT NULL,
    model_a TEXT NOT NULL, model_b TEXT NOT NULL, outcome TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (id INTEGER PRIMARY KEY, rater TEXT NOT NULL, prompt_id INTEGER NOT NULL,
    model TEXT NOT NULL, score INTEGER NOT NULL, comment TEXT NOT NULL, created REAL NOT NULL);
"""
OUTCOMES = ("a", "b", "tie", "both_bad")


class ArenaStore:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by the server's worker threads, serialized by a lock
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.executescript(SCHEMA)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock, self._db:
            return self._db.execute(sql, args).fetchall()

    def add_prompts(self, texts: list[str]) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR IGNORE INTO prompts (text) VALUES (?)", [(t,) for t in texts])

    def prompts(self) -> list[tuple[int, str]]:
        return self._query("SELECT id, text FROM prompts ORDER BY id")

    def answer(self, prompt_id: int, model: str) -> str | None:
        rows = self._query("SELECT text FROM answers WHERE prompt_id = ? AND model = ?", (prompt_id, model))
        return rows[0][0] if rows else None

    def set_answer(self, prompt_id: int, model: str, text: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (prompt_id, model, text))

    def models(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT model FROM answers ORDER BY model")]

    def add_vote(self, rater: str, prompt_id: int, model_a: str, model_b: str, outcome: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT INTO votes (rater, prompt_id, model_a, model_b, outcome, created) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (rater, prompt_id, model_a, model_b, outcome, time.time()))

    def add_rating(self, rater: str, prompt_id: int, model: str, score: int, comment: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT INTO ratings (rater, prompt_id, model, score, comment, created) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (rater, prompt_id, model, score, comment, time.time()))

    def votes(self) -> list[tuple[str, int, str, str, str]]:
        """(rater, prompt_id, model_a, model_b, outcome), oldest first."""
        return self._query("SELECT rater, prompt_id, model_a, model_b, outcome FROM votes ORDER BY id")

    def judged_by(self, rater: str) -> set[tuple[int, str, str]]:
        """(prompt, model, model) items the rater has voted on, model pair sorted."""
        return {(p, *sorted((a, b))) for r, p, a, b, _ in self.votes() if r == rater}

    def csv(self, table: str) -> str:
        columns = {"votes": "id, rater, prompt_id, model_a, model_b, outcome, created",
                   "ratings": "id, rater, prompt_id, model, score, comment, created"}[table]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([c.strip() for c in columns.split(",")])
        writer.writerows(self._query(f"SELECT {columns} FROM {table} ORDER BY id"))
        return out.getvalue()
