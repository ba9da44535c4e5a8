"""File formats: how one parsed JSON record becomes a :class:`Conversation`.

Each format is a :class:`RecordFormat`: its name, the top-level key that identifies it when
the format is detected, and a mapper ``(record, default_id) -> Conversation``. Mappers check
only the shape of the record (rule ``schema``) and the speaker names; the dialogue rules are
checked afterwards, for every format alike, by :func:`resure.data.validate.validate_conversation`.

Formats:

- ``openai``: ``{"messages": [{"role", "content", "meta"?}], "id"?, "meta"?}``; also the
  format :func:`resure.data.save_conversations` writes.
- ``sharegpt``: ``{"conversations": [{"from", "value"}], "id"?}`` with ``from`` in
  :data:`SHAREGPT_ROLES`.
- ``mtbench101``: ``{"task", "id", "history": [{"user", "bot"}, ...]}``; ``task`` is kept
  in the conversation's meta.

A record without ``id`` gets ``default_id`` (``<file name>:<line>`` or ``<file name>[i]``).

Notes:
    Fields a format does not define (an OpenAI message's ``name`` or ``tool_calls``, extra
    ShareGPT keys) are ignored; an OpenAI ``content`` given as a list of parts is refused by
    the ``content-type`` rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resure.conversation import Conversation, Message
from resure.data.problems import RecordError

SHAREGPT_ROLES: dict[str, str] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


@dataclass(frozen=True)
class RawRecord:
    """One parsed record before mapping.

    Attributes:
        location: ``path:line``, ``path[index]`` or ``chitchat[<id>]``.
        value: the parsed JSON value.
        default_id: the id used when the record carries none.
        known_id: an id its container gives it (the key of a chitchat dialogue), if any.
    """

    location: str
    value: Any
    default_id: str
    known_id: str | None = None


@dataclass(frozen=True)
class RecordFormat:
    """A format: ``name``, the top-level ``key`` that identifies it in a file, ``mapper``."""

    name: str
    key: str | None
    mapper: Callable[[Any, str], Conversation]


# ---- shared shape checks -------------------------------------------------------------


def expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError("schema", f"{what} is {_json_type(value)}, expected an object")
    return value


def expect_field(obj: dict[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise RecordError("schema", f"{what} lacks {key!r}")
    return obj[key]


def expect_list(obj: dict[str, Any], key: str, what: str) -> list[Any]:
    value = expect_field(obj, key, what)
    if not isinstance(value, list):
        raise RecordError("schema", f"{what} {key!r} is {_json_type(value)}, expected a list")
    return value


def meta_field(obj: dict[str, Any], what: str) -> dict[str, Any]:
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise RecordError("schema", f"{what} 'meta' is {_json_type(meta)}, expected an object")
    return dict(meta)


def record_id(record: Any, default_id: str) -> str:
    """The record's ``id`` as a string, or ``default_id`` when it has none."""
    if not isinstance(record, dict) or "id" not in record:
        return default_id
    value = record["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RecordError("schema", f"'id' is {_json_type(value)}, expected a string or integer")
    return str(value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


# ---- the formats ---------------------------------------------------------------------


def map_openai(record: Any, default_id: str) -> Conversation:
    rec = expect_object(record, "record")
    messages = expect_list(rec, "messages", "record")
    return Conversation(
        id=record_id(rec, default_id),
        messages=tuple(_openai_message(m, i) for i, m in enumerate(messages)),
        meta=meta_field(rec, "record"),
    )


def _openai_message(value: Any, i: int) -> Message:
    what = f"message {i}"
    msg = expect_object(value, what)
    return Message(
        role=expect_field(msg, "role", what),
        content=expect_field(msg, "content", what),
        meta=meta_field(msg, what),
    )


def map_sharegpt(record: Any, default_id: str) -> Conversation:
    rec = expect_object(record, "record")
    turns = expect_list(rec, "conversations", "record")
    return Conversation(
        id=record_id(rec, default_id),
        messages=tuple(_sharegpt_message(t, i) for i, t in enumerate(turns)),
    )


def _sharegpt_message(value: Any, i: int) -> Message:
    what = f"message {i}"
    turn = expect_object(value, what)
    speaker = expect_field(turn, "from", what)
    if not isinstance(speaker, str) or speaker not in SHAREGPT_ROLES:
        raise RecordError(
            "role-known", f"{what} is from {speaker!r}; known: {', '.join(SHAREGPT_ROLES)}"
        )
    return Message(role=SHAREGPT_ROLES[speaker], content=expect_field(turn, "value", what))


def map_mtbench101(record: Any, default_id: str) -> Conversation:
    rec = expect_object(record, "record")
    task = expect_field(rec, "task", "record")
    history = expect_list(rec, "history", "record")
    messages: list[Message] = []
    for i, value in enumerate(history):
        what = f"history[{i}]"
        pair = expect_object(value, what)
        messages.append(Message("user", expect_field(pair, "user", what)))
        messages.append(Message("assistant", expect_field(pair, "bot", what)))
    conv_id = record_id(rec, default_id)
    return Conversation(id=conv_id, messages=tuple(messages), meta={"task": task})


FILE_FORMATS: dict[str, RecordFormat] = {
    f.name: f
    for f in (
        RecordFormat("openai", "messages", map_openai),
        RecordFormat("sharegpt", "conversations", map_sharegpt),
        RecordFormat("mtbench101", "history", map_mtbench101),
    )
}


def detect_format(first_record: Any) -> RecordFormat | None:
    """The file format whose identifying key the first record has, or None."""
    if not isinstance(first_record, dict):
        return None
    for fmt in FILE_FORMATS.values():
        if fmt.key in first_record:
            return fmt
    return None
