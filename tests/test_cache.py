"""The judgment cache: keys, persistence, and two processes sharing one database."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from resure.eval.cache import CachedReply, JudgmentCache, cache_key

BASE = {
    "base_url": "http://127.0.0.1:8000/v1",
    "model": "judge",
    "system": "sys",
    "user": "user prompt",
    "sampling": {"temperature": 0.0, "max_tokens": 2048},
    "repeat": 0,
}


def test_key_changes_with_every_part_that_changes_the_reply():
    base = cache_key(**BASE)
    changes = [
        {"base_url": "http://other:8000/v1"},
        {"model": "judge-2"},
        {"system": "sys."},
        {"user": "user prompt "},
        {"sampling": {"temperature": 0.0, "max_tokens": 1024}},
        {"repeat": 1},
    ]
    keys = {cache_key(**{**BASE, **change}) for change in changes}
    assert base not in keys and len(keys) == len(changes)
    assert len(base) == 64 and int(base, 16) >= 0


def test_key_ignores_a_trailing_slash_and_dict_order():
    same = {**BASE, "base_url": BASE["base_url"] + "/",
            "sampling": {"max_tokens": 2048, "temperature": 0.0}}
    assert cache_key(**same) == cache_key(**BASE)


def test_round_trip_persists_and_uses_wal(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    with JudgmentCache(path) as cache:
        assert cache.get("k") is None
        cache.put("k", CachedReply("Rating: [[7]]", model="m", finish_reason="stop"))
        cache.put("k", CachedReply("a later reply"))  # the first entry is kept
    with JudgmentCache(path) as cache:
        assert cache.get("k") == CachedReply("Rating: [[7]]", model="m", finish_reason="stop")
        assert len(cache) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _writer(path: str, worker: int, n: int, queue) -> None:
    """Write n own keys, read the other worker's keys as they appear, report what was seen."""
    cache = JudgmentCache(path)
    seen = 0
    for i in range(n):
        cache.put(f"w{worker}-{i}", CachedReply(f"reply {worker} {i}"))
        cache.put("shared", CachedReply(f"shared from {worker}"))
        seen += cache.get(f"w{1 - worker}-{i // 2}") is not None
    assert all(cache.get(f"w{worker}-{i}").content == f"reply {worker} {i}" for i in range(n))
    cache.close()
    queue.put((worker, seen))


def test_two_processes_write_and_read_the_same_database(tmp_path):
    path = str(tmp_path / "cache.sqlite")
    JudgmentCache(path).close()
    ctx = mp.get_context("spawn")  # fresh interpreters, as two `resure judge` runs
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, 500, queue)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    results = dict(queue.get(timeout=5) for _ in procs)
    assert set(results) == {0, 1}
    with JudgmentCache(path) as cache:
        assert len(cache) == 2 * 500 + 1
        assert cache.get("w0-499").content == "reply 0 499"
        assert cache.get("w1-0").content == "reply 1 0"
        assert cache.get("shared").content in {"shared from 0", "shared from 1"}
