"""A persistent cache of judge answers in SQLite (stdlib ``sqlite3``).

The key is a SHA-256 of the judge model, the exact messages and the sampling parameters, so a changed rubric,
completion or temperature is a miss. Only answers that parsed are stored: a garbled answer is never replayed.

Calls are short and synchronous under a lock: coroutines of one event loop never interleave inside them, and
threads (TRL's reward loop, the main thread) are serialised. WAL mode and a busy timeout let several training
processes share one file.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Optional


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """A stable hash of everything that determines the judge's answer."""
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgeCache:
    """``get``/``put`` of answer text by key in one SQLite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = sqlite3.connect(str(self.path), timeout=30.0,
                                                                   check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS judge_cache (key TEXT PRIMARY KEY, answer TEXT NOT NULL,"
                               " model TEXT, created REAL)")

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            if self._conn is None:
                return None
            row = self._conn.execute("SELECT answer FROM judge_cache WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, answer: str, model: str = "") -> None:
        with self._lock:
            if self._conn is None:
                return
            self._conn.execute("INSERT OR REPLACE INTO judge_cache (key, answer, model, created) VALUES (?, ?, ?, ?)",
                               (key, answer, model, time.time()))

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return 0
            return int(self._conn.execute("SELECT COUNT(*) FROM judge_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
