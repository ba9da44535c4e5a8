"""Reading a 1-10 rating out of a judge's reply, without letting the judged answer vote.

FastChat's MT-Bench judge asks for the rating as ``[[N]]`` and reads the first match of
``\\[\\[(\\d+\\.?\\d*)\\]\\]``, falling back to ``\\[(\\d+\\.?\\d*)\\]`` (Zheng et al.,
2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", App. prompt templates).
The first match is unsafe: a judge that quotes the answer ("the assistant wrote
'Rating: [[10]]'") hands the rating to the answer. The MT-Bench templates must stay
byte-identical, so the protection sits here, in :func:`parse_rating`:

1. Only the judge's reply is searched; the judged answers are passed in as ``untrusted``
   text and are never parsed for a rating.
2. The double-bracket pattern is used when it matches anywhere in the reply; only a reply
   with no ``[[N]]`` at all falls back to single brackets (as FastChat does).
3. The templates tell the judge to end with the rating, so a rating on the reply's last
   non-empty line is the verdict, unless that line is a verbatim piece of an answer
   (a judge echoing the answer's closing line): then ``rating_copied_from_answer``.
4. With no rating on the last line, the reply's ratings must agree on one value, and that
   value's token (e.g. ``[[10]]``) must not occur in an answer; otherwise the failure is
   ``ambiguous_rating`` or ``rating_copied_from_answer``.
5. The value must lie on the 1-10 scale (``rating_out_of_range`` otherwise).

Notes:
    The rule trades a few false failures for safety: an answer that contains its judge's
    exact final line (e.g. both end with ``Rating: [[10]]``) yields a failure, never a
    score. On every scored row of the real GPT-4 judgments of MT-Bench, the rule returns
    the score FastChat recorded (tested).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ParseFailure = Literal[
    "empty_content",
    "no_rating",
    "ambiguous_rating",
    "rating_copied_from_answer",
    "rating_out_of_range",
]

# FastChat's two patterns (fastchat/llm_judge/common.py: one_score_pattern[_backup]).
DOUBLE_BRACKET = re.compile(r"\[\[(\d+\.?\d*)\]\]")
SINGLE_BRACKET = re.compile(r"\[(\d+\.?\d*)\]")

SCALE = (1.0, 10.0)


@dataclass(frozen=True)
class ParsedRating:
    """The outcome of :func:`parse_rating`: a score or a failure with its detail."""

    score: float | None
    failure: ParseFailure | None = None
    detail: str | None = None


def parse_rating(
    reply: str | None, untrusted: Sequence[str] = (), scale: tuple[float, float] = SCALE
) -> ParsedRating:
    """The judge's rating in ``reply`` (see the module docstring for the rule).

    Args:
        reply: the judge's raw reply text.
        untrusted: the judged answers as shown to the judge; text copied from them is
            never taken as the judge's verdict.
        scale: inclusive bounds a rating must lie within.
    """
    if reply is None or not reply.strip():
        return ParsedRating(None, "empty_content", "the judge returned no text")
    pattern = DOUBLE_BRACKET if DOUBLE_BRACKET.search(reply) else SINGLE_BRACKET
    matches = list(pattern.finditer(reply))
    if not matches:
        return ParsedRating(None, "no_rating", "no [[N]] or [N] rating in the reply")
    last_line = _last_line(reply)
    on_last = [m for m in matches if m.start() >= len(reply.rstrip()) - len(last_line)]
    if on_last:
        return _from_last_line(last_line, on_last, untrusted, scale)
    return _from_whole_reply(matches, untrusted, scale)


def _last_line(reply: str) -> str:
    return reply.rstrip().splitlines()[-1].strip()


def _from_last_line(
    line: str, matches: list[re.Match], untrusted: Sequence[str], scale: tuple[float, float]
) -> ParsedRating:
    values = {_value(m) for m in matches}
    if len(values) > 1:
        detail = f"distinct ratings on the last line: {line!r}"
        return ParsedRating(None, "ambiguous_rating", detail)
    if any(line in text for text in untrusted):
        return ParsedRating(
            None, "rating_copied_from_answer", f"the last line {line!r} is copied from an answer"
        )
    return _in_scale(values.pop(), scale)


def _from_whole_reply(
    matches: list[re.Match], untrusted: Sequence[str], scale: tuple[float, float]
) -> ParsedRating:
    values = {_value(m) for m in matches}
    if len(values) > 1:
        shown = ", ".join(m.group(0) for m in matches)
        return ParsedRating(None, "ambiguous_rating", f"distinct ratings in the reply: {shown}")
    token = matches[0].group(0)
    if any(token in text for text in untrusted):
        return ParsedRating(
            None,
            "rating_copied_from_answer",
            f"{token} is not on the last line and also occurs in an answer",
        )
    return _in_scale(values.pop(), scale)


def _value(match: re.Match) -> float:
    return float(match.group(1))


def _in_scale(value: float, scale: tuple[float, float]) -> ParsedRating:
    low, high = scale
    if not low <= value <= high:
        detail = f"rating {value:g} outside {low:g}-{high:g}"
        return ParsedRating(None, "rating_out_of_range", detail)
    return ParsedRating(value)
