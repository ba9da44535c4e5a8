"""A persistent cache of judge replies, shared safely by threads and processes.

Each reply is stored under the sha256 of everything that can change it: the server
(base URL), the judge model, the full system and user messages, the sampling settings and
the repeat index. A rerun with a warm cache therefore sends no request at all, and any
change to a prompt or setting misses the cache instead of returning a stale reply.

The store is one SQLite file in write-ahead-log mode (readers never block the writer, and
a busy timeout makes concurrent writers wait instead of failing), so several ``resure
judge`` processes may share it.

Notes:
    Only replies that arrived are cached; transport failures (timeouts, refused
    connections, HTTP errors after the client's retries) are not, so a rerun retries them.
    Replies that held no rating are cached: the raw text is kept and re-parsed on rerun.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Bumped when the meaning of a cached value changes, so old entries are not reused.
KEY_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class CachedReply:
    """A judge reply as stored: its text and what the server said about it."""

    content: str
    model: str | None = None
    finish_reason: str | None = None


def cache_key(
    *,
    base_url: str | None,
    model: str,
    system: str,
    user: str,
    sampling: dict[str, Any],
    repeat: int,
) -> str:
    """sha256 hex digest identifying one judge request."""
    parts = {
        "version": KEY_VERSION,
        "base_url": (base_url or "").rstrip("/"),
        "model": model,
        "messages": [system, user],
        "sampling": sampling,
        "repeat": repeat,
    }
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Judge replies by :func:`cache_key`, stored in SQLite (WAL) at ``path``.

    One connection per instance, guarded by a lock so judge worker threads can share the
    instance; each process opens its own instance.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, each statement is its own short transaction.
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else CachedReply(**json.loads(row[0]))

    def put(self, key: str, reply: CachedReply) -> None:
        """Store ``reply``; an entry already there (from another process) is kept."""
        value = json.dumps(asdict(reply), ensure_ascii=False)
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO replies (key, value, created) VALUES (?, ?, ?)",
                (key, value, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
