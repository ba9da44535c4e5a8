"""What goes wrong with a record, and the error that carries it.

Every problem found while reading a source is a :class:`RecordProblem`: where it is (a
``file:line``, a ``file[index]`` in a JSON array, or ``chitchat[<id>]``), the record's id
when it could be read, the name of the rule broken and a sentence saying how. Under the
``error`` policy the first problem is raised as a :class:`DataError`; under ``skip`` the
problems are collected on the load result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecordProblem:
    """One invalid record (or an unreadable file, when ``record_id`` is None).

    Attributes:
        source: the source as given (a path or ``chitchat:heldout``).
        location: ``data.jsonl:17``, ``data.json[16]`` or ``chitchat[<id>]``.
        record_id: the record's id when it could be read, else None.
        rule: short rule name, e.g. ``"roles-alternate"`` (see :mod:`resure.data.validate`).
        detail: what exactly is wrong.
    """

    source: str
    location: str
    record_id: str | None
    rule: str
    detail: str

    def message(self) -> str:
        """``data.jsonl:17 (id=abc): rule 'roles-alternate': message 3 is ...``."""
        where = self.location
        if self.record_id is not None and self.record_id != self.location:
            where += f" (id={self.record_id})"
        return f"{where}: rule '{self.rule}': {self.detail}"


class DataError(ValueError):
    """Invalid data; ``.problem`` says where and which rule."""

    def __init__(self, problem: RecordProblem):
        super().__init__(problem.message())
        self.problem = problem


class RecordError(Exception):
    """Raised by a format's mapper for a record it cannot turn into a conversation.

    The loader adds the location and turns it into a :class:`RecordProblem`.
    """

    def __init__(self, rule: str, detail: str):
        super().__init__(f"rule '{rule}': {detail}")
        self.rule = rule
        self.detail = detail
