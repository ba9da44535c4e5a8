"""Typed records for multi-turn dialogues.

A :class:`Conversation` is an ordered list of :class:`Message` objects plus an id and
free-form metadata. Per-turn metadata (for example corruption labels written by
:mod:`resure.sweep.mixtures`) lives on each message's ``meta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One message of a dialogue.

    Attributes:
        role: ``"system"``, ``"user"`` or ``"assistant"``.
        content: the text.
        meta: per-message annotations, e.g. ``{"corruption": "truncated"}``.
    """

    role: Role
    content: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.meta:
            out["meta"] = dict(self.meta)
        return out


@dataclass(frozen=True)
class Conversation:
    """A dialogue: an id, its messages in order, and free metadata.

    Attributes:
        id: unique id within its source (used in error messages and as sample id).
        messages: the messages in order.
        meta: source-level annotations, e.g. human ratings or the source name.
    """

    id: str
    messages: tuple[Message, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def assistant_turns(self) -> list[Message]:
        return [m for m in self.messages if m.role == "assistant"]

    @property
    def num_assistant_turns(self) -> int:
        return sum(m.role == "assistant" for m in self.messages)

    def chat(self) -> list[dict[str, str]]:
        """Messages as ``[{"role", "content"}]`` dicts for ``apply_chat_template``."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": [m.to_dict() for m in self.messages],
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conversation:
        """Inverse of :meth:`to_dict` (no validation; see :mod:`resure.data`)."""
        msgs = tuple(
            Message(role=m["role"], content=m["content"], meta=dict(m.get("meta", {})))
            for m in d["messages"]
        )
        return cls(id=str(d["id"]), messages=msgs, meta=dict(d.get("meta", {})))
