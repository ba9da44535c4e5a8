"""Reading dialogue sources into validated conversations, and saving them.

A source is a ``.jsonl`` file (one JSON record a line; blank lines are ignored), a ``.json``
file (a JSON array of records, or JSON lines despite the extension), or one of the chitchat
sources of :mod:`resure.data.chitchat`. Each record is mapped by its format
(:mod:`resure.data.formats`), checked for a unique id, then validated
(:mod:`resure.data.validate`).

Policies: ``error`` raises :class:`DataError` on the first invalid record; ``skip`` keeps
the valid records, lists every invalid one in :attr:`LoadResult.skipped` and logs a warning
with the count per rule. Problems with the source as a whole (unknown extension,
undetectable format, a ``.json`` file that does not parse) raise under both policies.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from resure.conversation import Conversation
from resure.data.chitchat import CHITCHAT_FORMAT, SOURCES, chitchat_records, is_chitchat_source
from resure.data.formats import FILE_FORMATS, RawRecord, RecordFormat, detect_format, record_id
from resure.data.problems import DataError, RecordError, RecordProblem
from resure.data.validate import validate_conversation
from resure.io import atomic_write_jsonl

logger = logging.getLogger(__name__)

POLICIES = ("error", "skip")
FORMATS = (*FILE_FORMATS, CHITCHAT_FORMAT.name)
EXTENSIONS = (".jsonl", ".json")


@dataclass
class LoadResult:
    """What :func:`load_conversations` read.

    Attributes:
        source: the source as given.
        format: the format used (detected or given).
        conversations: the valid conversations, in source order.
        skipped: one problem per invalid record (policy ``skip``; empty under ``error``).
    """

    source: str
    format: str
    conversations: list[Conversation] = field(default_factory=list)
    skipped: list[RecordProblem] = field(default_factory=list)

    @property
    def num_records(self) -> int:
        return len(self.conversations) + len(self.skipped)

    def skipped_by_rule(self) -> dict[str, int]:
        """Number of skipped records per rule, most frequent first."""
        return dict(Counter(p.rule for p in self.skipped).most_common())


def load_conversations(
    source: str | os.PathLike, format: str | None = None, policy: str = "error"
) -> LoadResult:
    """Read ``source`` into validated conversations.

    Args:
        source: a ``.jsonl`` / ``.json`` path, or ``chitchat``, ``chitchat:train``,
            ``chitchat:heldout`` (these names win over a file of the same name).
        format: one of :data:`FORMATS`; None detects it from the first record's keys.
        policy: ``"error"`` (raise on the first invalid record) or ``"skip"``.

    Raises:
        DataError: an invalid record (policy ``error``) or an unreadable source.
        OSError: the file cannot be opened.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    name = os.fspath(source)
    fmt, items = _open_source(name, format)
    result = LoadResult(source=name, format=fmt.name)
    seen: dict[str, str] = {}
    for item in items:
        outcome = item if isinstance(item, RecordProblem) else _load_one(item, fmt, seen, name)
        if isinstance(outcome, Conversation):
            result.conversations.append(outcome)
        elif policy == "error":
            raise DataError(outcome)
        else:
            result.skipped.append(outcome)
    _log_summary(result)
    return result


def save_conversations(path: str | os.PathLike, convs: Iterable[Conversation]) -> None:
    """Write ``convs`` to ``path`` in the ``openai`` format with ids and meta, atomically.

    Notes:
        Conversations are written as given, without validation; loading the file applies
        the rules. Meta values must be JSON-serialisable, and tuples come back as lists.
    """
    rows = [c.to_dict() for c in convs]
    atomic_write_jsonl(path, rows)
    logger.info("saved %d conversations to %s", len(rows), path)


# ---- one record ----------------------------------------------------------------------


def _load_one(
    item: RawRecord, fmt: RecordFormat, seen: dict[str, str], source: str
) -> Conversation | RecordProblem:
    """Map, check the id's uniqueness, validate; the conversation or its problem."""
    rid = item.known_id
    try:
        rid = rid or _explicit_id(item)
        conv = fmt.mapper(item.value, item.default_id)
        if conv.id in seen:
            raise RecordError("unique-id", f"id {conv.id!r} already used at {seen[conv.id]}")
        seen[conv.id] = item.location
        validate_conversation(conv)
    except RecordError as e:
        return RecordProblem(source, item.location, rid, e.rule, e.detail)
    return conv


def _explicit_id(item: RawRecord) -> str | None:
    """The record's own ``id`` (raises the ``schema`` problem for a malformed one)."""
    conv_id = record_id(item.value, item.default_id)
    return None if conv_id == item.default_id else conv_id


def _log_summary(result: LoadResult) -> None:
    logger.info(
        "loaded %d conversations from %s (format %s)",
        len(result.conversations), result.source, result.format,
    )
    if result.skipped:
        counts = ", ".join(f"{rule}={n}" for rule, n in result.skipped_by_rule().items())
        logger.warning(
            "%s: skipped %d of %d records (%s)",
            result.source, len(result.skipped), result.num_records, counts,
        )


# ---- sources -------------------------------------------------------------------------


def _source_error(source: str, rule: str, detail: str) -> DataError:
    return DataError(RecordProblem(source, source, None, rule, detail))


def _open_source(
    source: str, format: str | None
) -> tuple[RecordFormat, list[RawRecord | RecordProblem]]:
    if is_chitchat_source(source):
        return _open_chitchat(source, format)
    if format == CHITCHAT_FORMAT.name:
        raise _source_error(
            source, "source", f"format 'chitchat' reads the chitchat-dataset package; give "
            f"source {', '.join(SOURCES)} instead of a file"
        )
    path = Path(source)
    if path.suffix not in EXTENSIONS:
        raise _source_error(
            source, "source", f"unsupported file extension {path.suffix!r}; "
            f"expected {' or '.join(EXTENSIONS)}"
        )
    items = _read_records(path, source)
    return _choose_format(source, items, format), items


def _open_chitchat(
    source: str, format: str | None
) -> tuple[RecordFormat, list[RawRecord | RecordProblem]]:
    if source not in SOURCES:
        raise _source_error(
            source, "source", f"unknown chitchat source; use one of {', '.join(SOURCES)}"
        )
    if format not in (None, CHITCHAT_FORMAT.name):
        raise _source_error(source, "source", f"{source} has format 'chitchat', not {format!r}")
    return CHITCHAT_FORMAT, chitchat_records(source)


def _choose_format(
    source: str, items: list[RawRecord | RecordProblem], format: str | None
) -> RecordFormat:
    if format is not None:
        return FILE_FORMATS[format]
    first = next((i for i in items if isinstance(i, RawRecord)), None)
    fmt = detect_format(first.value) if first is not None else None
    if fmt is None:
        raise _source_error(source, "file-format", _undetected_detail(first))
    logger.debug("%s: detected format %s", source, fmt.name)
    return fmt


def _undetected_detail(first: RawRecord | None) -> str:
    known = "; ".join(f"{f.name} (key {f.key!r})" for f in FILE_FORMATS.values())
    known += f"; chitchat (source {', '.join(SOURCES)})"
    if first is None:
        return f"cannot detect the format: no readable record; known formats: {known}"
    keys = sorted(first.value) if isinstance(first.value, dict) else type(first.value).__name__
    return f"cannot detect the format from the first record ({keys}); known formats: {known}"


# ---- reading files -------------------------------------------------------------------


def _read_records(path: Path, source: str) -> list[RawRecord | RecordProblem]:
    """JSON array or JSON lines, chosen by the first non-space character."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise _source_error(source, "json", f"not UTF-8 text (byte {e.start})") from e
    if text.lstrip().startswith("["):
        return _json_array_records(text, source, path.name)
    return list(_jsonl_records(text, source, path.name))


def _json_array_records(text: str, source: str, file_name: str) -> list[RawRecord | RecordProblem]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        problem = RecordProblem(source, f"{source}:{e.lineno}", None, "json", _json_detail(e))
        raise DataError(problem) from e
    return [RawRecord(f"{source}[{i}]", v, f"{file_name}[{i}]") for i, v in enumerate(values)]


def _jsonl_records(text: str, source: str, file_name: str) -> Iterable[RawRecord | RecordProblem]:
    # Split on "\n" only: str.splitlines would also break inside strings at U+2028 etc.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        location = f"{source}:{lineno}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            yield RecordProblem(source, location, None, "json", _json_detail(e))
            continue
        yield RawRecord(location, value, f"{file_name}:{lineno}")


def _json_detail(e: json.JSONDecodeError) -> str:
    return f"invalid JSON: {e.msg} (column {e.colno})"
