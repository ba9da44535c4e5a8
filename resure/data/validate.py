"""The rules every loaded dialogue must satisfy, whatever its source format.

Each format first maps its records to :class:`~resure.conversation.Conversation` objects
(raising :class:`~resure.data.problems.RecordError` with rule ``schema``, ``role-known``,
``two-speakers`` or ``json`` for records it cannot map); then :func:`validate_conversation`
checks the result. Message indices in the details are 0-based positions in the mapped
message list (for ``openai`` and ``sharegpt`` files, the position in the record's own list).

Rules, in the order they are checked:

- ``role-known``: every role is ``system``, ``user`` or ``assistant``.
- ``content-type``: every content is a string.
- ``content-nonempty``: every content has a non-space character.
- ``system-first``: system messages only before the first user or assistant message.
- ``starts-with-user``: the first non-system message is a user message.
- ``roles-alternate``: after that, user and assistant strictly alternate; two consecutive
  messages of the same role are an error (the detail names the index).
- ``has-assistant``: at least one assistant message.
- ``ends-with-assistant``: the last message is an assistant message. A trailing user turn
  is an error rather than trimmed: training learns nothing from it, and trimming it
  silently would change the data the user gave.

The loader adds ``unique-id`` (two records of one source share an id).
"""

from __future__ import annotations

from resure.conversation import ROLES, Conversation
from resure.data.problems import RecordError

RULES: dict[str, str] = {
    "json": "each line (or the whole .json file) is valid JSON",
    "schema": "the record has the fields its format requires, with the right types",
    "two-speakers": "a chitchat dialogue has at most two senders, one per block",
    "unique-id": "ids are unique within a source",
    "role-known": "roles are system, user or assistant",
    "content-type": "content is a string",
    "content-nonempty": "content is not empty or blank",
    "system-first": "system messages only at the start",
    "starts-with-user": "the first non-system message is from the user",
    "roles-alternate": "user and assistant alternate",
    "has-assistant": "at least one assistant turn",
    "ends-with-assistant": "the dialogue ends with an assistant turn",
}


def validate_conversation(conv: Conversation) -> None:
    """Raise :class:`RecordError` naming the first rule ``conv`` breaks (see module doc)."""
    _check_messages(conv)
    _check_order(conv)
    _check_ending(conv)


def _check_messages(conv: Conversation) -> None:
    for i, m in enumerate(conv.messages):
        if m.role not in ROLES:
            raise RecordError(
                "role-known", f"message {i} has role {m.role!r}; known roles: {', '.join(ROLES)}"
            )
        if not isinstance(m.content, str):
            kind = type(m.content).__name__
            raise RecordError("content-type", f"message {i} content is {kind}, expected str")
        if not m.content.strip():
            raise RecordError("content-nonempty", f"message {i} ({m.role}) has empty content")


def _check_order(conv: Conversation) -> None:
    roles = [m.role for m in conv.messages]
    start = 0
    while start < len(roles) and roles[start] == "system":
        start += 1
    for i in range(start, len(roles)):
        if roles[i] == "system":
            raise RecordError("system-first", f"message {i} is 'system' after the dialogue began")
    if start < len(roles) and roles[start] != "user":
        raise RecordError(
            "starts-with-user", f"message {start} is {roles[start]!r}; the dialogue must open "
            "with a user message (after optional system messages)"
        )
    for i in range(start + 1, len(roles)):
        if roles[i] == roles[i - 1]:
            raise RecordError("roles-alternate", f"message {i} is {roles[i]!r} after {roles[i]!r}")


def _check_ending(conv: Conversation) -> None:
    if not any(m.role == "assistant" for m in conv.messages):
        raise RecordError("has-assistant", "dialogue has no assistant turn")
    if conv.messages[-1].role != "assistant":
        raise RecordError(
            "ends-with-assistant", f"dialogue ends with a user turn (message "
            f"{len(conv.messages) - 1}); nothing after it to train on"
        )
