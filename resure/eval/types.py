"""Records that cross the boundaries between suites, backends and judges.

Suites produce :class:`EvalItem` objects; backends turn them into :class:`Answer` objects
(written as FastChat model-answer JSONL); judges turn answers into :class:`Judgment`
objects (written as FastChat judgment JSONL, plus our failure fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

HistoryMode = Literal["own", "golden"]


@dataclass(frozen=True)
class EvalItem:
    """One multi-turn benchmark item.

    Attributes:
        suite: suite name, e.g. ``"mt_bench"``.
        question_id: id unique within the suite (int for MT-Bench, str elsewhere).
        category: MT-Bench category or MT-Bench-101 task.
        turns: the user messages, in order.
        reference: golden assistant turns (same length as ``turns``) or None.
        history: ``"own"`` (the model sees its own earlier answers) or ``"golden"``
            (it sees ``reference`` as earlier answers and answers each turn afresh).
        temperature: sampling temperature the protocol asks for (0 = greedy).
        system: optional system prompt.
        meta: anything else the suite keeps (e.g. which turns are scored).
    """

    suite: str
    question_id: int | str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None
    history: HistoryMode = "own"
    temperature: float = 0.0
    system: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """A model's answers to every turn of one item (FastChat ``model_answer`` row)."""

    question_id: int | str
    model_id: str
    turns: tuple[str, ...]
    answer_id: str = ""
    tstamp: float = 0.0
    generation: dict[str, Any] = field(default_factory=dict)  # backend, sampling, template hash

    def to_fastchat(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "answer_id": self.answer_id,
            "model_id": self.model_id,
            "choices": [{"index": 0, "turns": list(self.turns)}],
            "tstamp": self.tstamp,
            "generation": dict(self.generation),
        }

    @classmethod
    def from_fastchat(cls, row: dict[str, Any]) -> Answer:
        return cls(
            question_id=row["question_id"],
            model_id=row["model_id"],
            turns=tuple(row["choices"][0]["turns"]),
            answer_id=row.get("answer_id", ""),
            tstamp=row.get("tstamp", 0.0),
            generation=dict(row.get("generation", {})),
        )


@dataclass(frozen=True)
class Judgment:
    """One judged turn (FastChat single-answer judgment row plus failure fields).

    ``score`` is None exactly when ``failure`` says why no score exists; a failed
    judgment is never given a number.
    """

    question_id: int | str
    model: str
    judge: str
    turn: int  # 1-based, as FastChat
    score: float | None
    user_prompt: str = ""
    judgment: str = ""
    failure: str | None = None
    scores: tuple[float, ...] = ()  # individual repeats, when repeats > 1
    tstamp: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
