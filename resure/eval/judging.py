"""Judging answer files and storing the judgments as FastChat judgment JSONL.

A judgment row has FastChat's single-answer fields (``question_id``, ``model``, ``judge``
as ``[judge model, template name]``, ``user_prompt``, ``judgment``, ``score``, ``turn``,
``tstamp``) plus ``failure``: None for a scored turn, else the reason it has no score (the
score is then null, never -1). Repeated judging adds ``scores``; ``meta`` keeps the rest of
:attr:`Judgment.meta`. FastChat's own files mark a failure with ``score: -1``;
:func:`judgment_from_row` reads both.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resure.eval.types import Answer, EvalItem, Judgment
from resure.io import atomic_write_jsonl, read_numbered_jsonl

logger = logging.getLogger(__name__)

#: FastChat's marker of a judge call that raised (fastchat/llm_judge/common.py).
FASTCHAT_API_ERROR = "$ERROR$"


@dataclass(frozen=True)
class JudgeSummary:
    """Counts of one judging run.

    Attributes:
        judged: judgments written (scored and failed).
        scored: judgments with a score.
        failed: failed judgments by reason.
        cached: judgments whose replies all came from the cache.
    """

    judged: int
    scored: int
    failed: dict[str, int]
    cached: int


def read_answers(paths: Iterable[str | Path]) -> list[Answer]:
    """Answers from FastChat model-answer JSONL files.

    Raises:
        ValueError: naming file and line of a row that is not a model-answer row, or of a
            second answer of the same model to the same question.
    """
    answers: list[Answer] = []
    seen: dict[tuple[str, Any], str] = {}
    for path in paths:
        for lineno, row in read_numbered_jsonl(path):
            where = f"{path}:{lineno}"
            answer = _answer_from_row(row, where)
            key = (answer.model_id, answer.question_id)
            if key in seen:
                raise ValueError(
                    f"{where}: second answer of model {answer.model_id!r} to question "
                    f"{answer.question_id} (first at {seen[key]})"
                )
            seen[key] = where
            answers.append(answer)
    return answers


def _answer_from_row(row: Any, where: str) -> Answer:
    try:
        answer = Answer.from_fastchat(row)
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError(
            f"{where}: not a model-answer row (needs question_id, model_id, choices[0].turns;"
            f" problem: {e!r})"
        ) from e
    if not all(isinstance(t, str) for t in answer.turns):
        raise ValueError(f"{where}: choices[0].turns must be strings")
    return answer


def warn_unanswered(items: Sequence[EvalItem], answers: Sequence[Answer]) -> int:
    """Log, per model, how many suite items have no answer; return the total."""
    ids = [item.question_id for item in items]
    answered: dict[str, set] = {}
    for a in answers:
        answered.setdefault(a.model_id, set()).add(a.question_id)
    total = 0
    for model, got in answered.items():
        missing = [q for q in ids if q not in got]
        if missing:
            total += len(missing)
            logger.warning(
                "model %s has no answer to %d of %d items (e.g. %s); they are not judged",
                model, len(missing), len(ids), ", ".join(map(str, missing[:5])),
            )
    return total


def judgment_to_row(j: Judgment) -> dict[str, Any]:
    """A FastChat judgment row plus ``failure`` (and ``scores``, ``meta``)."""
    meta = dict(j.meta)
    template = meta.pop("template", None)
    row: dict[str, Any] = {
        "question_id": j.question_id,
        "model": j.model,
        "judge": [j.judge, template],
        "user_prompt": j.user_prompt,
        "judgment": j.judgment,
        "score": j.score,
        "turn": j.turn,
        "tstamp": j.tstamp,
        "failure": j.failure,
    }
    if j.scores:
        row["scores"] = list(j.scores)
    if meta:
        # Round-trip so that values JSON cannot hold (e.g. numpy floats) become plain.
        row["meta"] = json.loads(json.dumps(meta, default=str))
    return row


#: Fields every judgment row has (ours and FastChat's).
JUDGMENT_FIELDS = ("question_id", "model", "judge", "turn", "score")


def judgment_from_row(row: dict[str, Any], where: str = "row") -> Judgment:
    """Inverse of :func:`judgment_to_row`; also reads FastChat rows (``score: -1``).

    Raises:
        ValueError: naming ``where`` and the missing field or bad value; a model-answer
            row (given by mistake) is named as such.
    """
    _check_judgment_row(row, where)
    try:
        judge = row["judge"]
        judge_model, template = (judge[0], judge[1]) if isinstance(judge, list) else (judge, None)
        score, failure = _score_and_failure(row)
        meta = dict(row.get("meta") or {})
        if template is not None:
            meta["template"] = template
        return Judgment(
            question_id=row["question_id"],
            model=row["model"],
            judge=judge_model,
            turn=int(row["turn"]),
            score=score,
            user_prompt=row.get("user_prompt", ""),
            judgment=row.get("judgment") or "",
            failure=failure,
            scores=tuple(row.get("scores") or ()),
            tstamp=float(row.get("tstamp") or 0.0),
            meta=meta,
        )
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: not a judgment row: bad value ({e})") from e


def _check_judgment_row(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: not a judgment row: a JSON {type(row).__name__}, expected "
                         "an object")
    if "model_id" in row and "choices" in row:
        raise ValueError(f"{where}: not a judgment row: a model-answer row (model_id, "
                         "choices); give the judgments `resure judge` wrote")
    missing = [field for field in JUDGMENT_FIELDS if field not in row]
    if missing:
        raise ValueError(f"{where}: not a judgment row: missing field "
                         f"{', '.join(map(repr, missing))} (needs {', '.join(JUDGMENT_FIELDS)})")


def _score_and_failure(row: dict[str, Any]) -> tuple[float | None, str | None]:
    failure = row.get("failure")
    score = row["score"]
    if failure is not None:
        return None, str(failure)
    if score is None:
        return None, "no_score"
    if score == -1:  # FastChat: the call raised ($ERROR$) or no rating was found
        return None, "api_error" if row.get("judgment") == FASTCHAT_API_ERROR else "no_rating"
    return float(score), None


def read_judgments(path: str | Path) -> list[Judgment]:
    """Judgments of a judgment JSONL file (ours or FastChat's)."""
    return [judgment_from_row(row, f"{path}:{lineno}")
            for lineno, row in read_numbered_jsonl(path)]


def write_judgments(path: str | Path, judgments: Iterable[Judgment]) -> None:
    """Write judgment rows atomically."""
    atomic_write_jsonl(path, (judgment_to_row(j) for j in judgments))


def summarize(judgments: Sequence[Judgment]) -> JudgeSummary:
    failed = Counter(j.failure for j in judgments if j.failure is not None)
    return JudgeSummary(
        judged=len(judgments),
        scored=sum(j.score is not None for j in judgments),
        failed=dict(sorted(failed.items())),
        cached=sum(bool(j.meta.get("cached")) for j in judgments),
    )


def run_judging(
    suite: str,
    data_dir: str | Path | None,
    answer_paths: Sequence[str | Path],
    judge: str,
    judge_options: dict[str, Any],
    output: str | Path,
    suite_options: dict[str, Any] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> JudgeSummary:
    """Load the suite and answers, judge, write ``output``; return the counts.

    Args:
        suite, suite_options, data_dir: the suite and where its files are.
        answer_paths: FastChat model-answer files. A judge that needs no answers
            (``reference_nll``) judges only the items answered in them, when given.
        judge, judge_options: the judge and its constructor options.
        output: the judgment JSONL to write.
        limit, seed: judge only ``limit`` items drawn with ``seed``, the same ones
            ``resure generate --limit`` answers (:func:`resure.eval.generate.select_items`).

    Raises:
        ValueError: a judge that grades answers without ``answer_paths``; answers that
            answer none of the selected items; bad answer rows (naming file and line).
    """
    # The packages register their built-in suites and judges on import.
    from resure.eval.generate import select_items
    from resure.eval.judges import get_judge
    from resure.eval.suites import get_suite

    judge_obj = get_judge(judge, **judge_options)
    if judge_obj.needs_answers and not answer_paths:
        raise ValueError(f"judge {judge!r} grades answers: give --answers FILE")
    items = get_suite(suite, **(suite_options or {})).load(data_dir)
    selected = select_items(items, limit, seed=seed)
    if len(selected) < len(items):
        logger.info("judging %d of %d items of %s (seed %d)", len(selected), len(items), suite,
                    seed)
    answers = read_answers(answer_paths) if answer_paths else None
    if answers is not None:
        selected, answers = _match_answers(selected, answers, answer_paths, judge_obj)
    judgments = judge_obj.judge(selected, answers if judge_obj.needs_answers else None)
    write_judgments(output, judgments)
    logger.info("wrote %d judgments to %s", len(judgments), output)
    return summarize(judgments)


def _match_answers(items: Sequence[EvalItem], answers: Sequence[Answer],
                   paths: Sequence[str | Path], judge) -> tuple[list[EvalItem], list[Answer]]:
    """The items to judge and the answers that belong to them.

    Answers to items outside ``items`` (left out by ``limit``) are dropped. A judge that
    needs answers is told of items without one; one that needs none judges only the
    answered items, so its judgments cover the same questions as the answers'.
    """
    ids = {item.question_id for item in items}
    kept = [a for a in answers if a.question_id in ids]
    files = ", ".join(map(str, paths))
    if not kept:
        raise ValueError(f"none of the {len(answers)} answers in {files} answers one of the "
                         f"{len(items)} selected items; check --suite, --suite-option and "
                         "--limit/--seed (they must match those given to generate)")
    if len(kept) < len(answers):
        logger.info("%d answers are to items not selected (--limit); not judged",
                    len(answers) - len(kept))
    if judge.needs_answers:
        warn_unanswered(items, kept)
        return list(items), kept
    answered = {a.question_id for a in kept}
    chosen = [item for item in items if item.question_id in answered]
    logger.info("judge %s scores reference turns; judging the %d of %d items answered in %s",
                judge.name, len(chosen), len(items), files)
    return chosen, kept
