"""The Chit Chat Challenge dialogues (package ``chitchat-dataset``) as conversations.

Sources: ``chitchat`` (all 7,168 dialogues), ``chitchat:train`` and ``chitchat:heldout``.

Mapping. The package holds a dict ``id -> {messages, ratings?, prompt?, start}`` where
``messages`` is a list of blocks, each block a list of consecutive chat lines
``{text, timestamp, sender}`` by one sender. One block becomes one message, its non-blank
lines joined with ``"\\n"`` (blank lines carry no text; a block of only blank lines becomes an
empty message, which validation refuses). The sender of the first block is the user, the
other sender the assistant. ``ratings`` (witty, upbeat, interesting), ``prompt`` and
``start`` are kept in the conversation's meta when present (a dialogue without ratings has
no ``ratings`` key), with ``split``. A block mixing senders, or a third sender, breaks rule
``two-speakers``; everything else goes through the common validation, so a dialogue of a
single block (no assistant turn) is refused there.

A chat room ends whenever a participant leaves, so about a quarter of the dialogues end with
a user block that nobody answered. That last block is part of the mapping's output only when
something answers it: an unanswered final user block is left out and the conversation's meta
records ``unanswered_user_block_dropped: True``, so the change is visible. Nothing else is
trimmed; a dialogue with no answered block at all is still refused (rule ``has-assistant``).

Split. A dialogue is held out when ``int(sha256(id)[:8 bytes], big-endian) % 100`` is below
:data:`HELDOUT_PERCENT` (5), which holds out 377 of the 7,168 dialogues (5.3%). The split
depends only on the id, so it is the same on every machine and for every release of the
package that keeps the ids. ``chitchat:heldout`` is what the ``chitchat_heldout``
evaluation suite reads; it is never used for training.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any, Literal

from resure.conversation import Conversation, Message
from resure.data.formats import RawRecord, RecordFormat, expect_field, expect_list, expect_object
from resure.data.problems import RecordError

logger = logging.getLogger(__name__)

HELDOUT_PERCENT = 5
SOURCES: dict[str, str | None] = {
    "chitchat": None,
    "chitchat:train": "train",
    "chitchat:heldout": "heldout",
}
ROLES_BY_ORDER = ("user", "assistant")


def chitchat_split(conv_id: str) -> Literal["train", "heldout"]:
    """``"heldout"`` for about 5% of ids (fixed by a SHA-256 of the id), else ``"train"``."""
    digest = hashlib.sha256(conv_id.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def is_chitchat_source(source: object) -> bool:
    """True for ``chitchat`` and any ``chitchat:<split>`` string (valid or not)."""
    return isinstance(source, str) and (source == "chitchat" or source.startswith("chitchat:"))


def chitchat_records(source: str) -> list[RawRecord]:
    """Raw records of ``source`` (one of :data:`SOURCES`), in the package's order."""
    split = SOURCES[source]
    return [
        RawRecord(f"chitchat[{cid}]", value, default_id=cid, known_id=cid)
        for cid, value in _dataset().items()
        if split is None or chitchat_split(cid) == split
    ]


@functools.cache
def _dataset() -> dict[str, Any]:
    import chitchat_dataset

    data = dict(chitchat_dataset.Dataset())
    logger.debug("read %d chitchat dialogues from %s", len(data), chitchat_dataset.__file__)
    return data


def map_chitchat(record: Any, default_id: str) -> Conversation:
    """Map one dialogue of the package (``default_id`` is its key) to a conversation."""
    rec = expect_object(record, "record")
    blocks = expect_list(rec, "messages", "record")
    speakers: list[str] = []
    messages = tuple(_block_message(b, i, speakers) for i, b in enumerate(blocks))
    meta = _meta(rec, default_id)
    if len(messages) > 2 and messages[-1].role == "user":
        messages = messages[:-1]
        meta["unanswered_user_block_dropped"] = True
    return Conversation(id=default_id, messages=messages, meta=meta)


def _block_message(block: Any, i: int, speakers: list[str]) -> Message:
    what = f"block {i}"
    if not isinstance(block, list) or not block:
        raise RecordError("schema", f"{what} is not a non-empty list of chat lines")
    lines = [expect_object(line, f"{what} line {j}") for j, line in enumerate(block)]
    senders = {str(expect_field(line, "sender", what)) for line in lines}
    if len(senders) > 1:
        raise RecordError("two-speakers", f"{what} mixes senders {sorted(senders)}")
    sender = senders.pop()
    if sender not in speakers:
        if len(speakers) == len(ROLES_BY_ORDER):
            raise RecordError("two-speakers", f"{what} is from a third sender {sender!r}")
        speakers.append(sender)
    texts = [expect_field(line, "text", what) for line in lines]
    if not all(isinstance(t, str) for t in texts):
        raise RecordError("schema", f"{what} has a 'text' that is not a string")
    content = "\n".join(t for t in texts if t.strip())
    return Message(role=ROLES_BY_ORDER[speakers.index(sender)], content=content)


def _meta(rec: dict[str, Any], conv_id: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"split": chitchat_split(conv_id)}
    for key in ("ratings", "prompt", "start"):
        if key in rec:
            meta[key] = dict(rec[key]) if isinstance(rec[key], dict) else rec[key]
    return meta


CHITCHAT_FORMAT = RecordFormat("chitchat", None, map_chitchat)
