"""Atomic file writes shared by every stage.

Every stage of the harness writes its outputs through these helpers: the content goes to
a temporary file in the same directory, is flushed and fsynced, then renamed over the
target. A reader therefore sees either the old file or the complete new one, never a
partial write, and a killed process leaves no half-written output behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Use for writers that want a path (``save_pretrained``, ``savefig``). On an exception
    the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(target: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(target, text)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file; a bad line raises ``ValueError`` naming file and line."""
    return [row for _, row in read_numbered_jsonl(path)]


def read_numbered_jsonl(
    path: str | os.PathLike, error: type[ValueError] = ValueError
) -> list[tuple[int, Any]]:
    """``(line number, parsed value)`` of each non-blank line of a JSONL file, for readers
    whose own checks name the line; bad JSON raises ``error`` naming file and line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                raise error(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
    return records
