"""MT-Bench-101: 1,388 dialogues over 13 tasks, answered with golden history.

File format (``mtbench101.jsonl``, one dialogue a line)::

    {"task": "GR", "id": 1, "history": [{"user": "...", "bot": "..."}, ...]}

Every user turn becomes a turn of the :class:`~resure.eval.types.EvalItem`; the ``bot``
turns become its ``reference`` and, with ``history="golden"``, the context the model
sees before each turn. The question id is ``"<task>-<id>"`` (e.g. ``"GR-1"``), so a
judgment names its task. ``meta`` carries the task code and name, the 1-based turns that
are scored, whether the judge is shown the reference, and the task's rubric (all from
``suites/mt_bench_101.toml``).

Scoring (Bai et al., 2024, Sec. 4): a dialogue's score is the minimum of its scored
turns' ratings, a task's score the mean over its dialogues, and the overall score the
mean of the task scores; see :func:`aggregate_mt_bench_101`.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from resure.eval.suites.base import SUITES, Suite
from resure.eval.suites.definitions import (
    SuiteDataError,
    SuiteDefinition,
    check_count,
    load_definition,
    locate_files,
    read_jsonl_records,
    split_rounds,
)
from resure.eval.types import EvalItem, Judgment

logger = logging.getLogger(__name__)

NAME = "mt_bench_101"


@dataclass(frozen=True)
class TaskSpec:
    """One task of ``suites/mt_bench_101.toml``."""

    code: str
    name: str
    ability: str
    skip_first_turn: bool
    needs_reference: bool
    rubric: str

    def scored_turns(self, num_turns: int) -> tuple[int, ...]:
        """1-based turns a judge rates in a dialogue of ``num_turns`` turns."""
        return tuple(range(2 if self.skip_first_turn else 1, num_turns + 1))


def task_specs(definition: SuiteDefinition | None = None) -> dict[str, TaskSpec]:
    """The 13 tasks of the definition, keyed by code (``"CM"``, ``"GR"``, ...)."""
    definition = definition or load_definition(NAME)
    return {
        code: TaskSpec(
            code=code,
            name=t["name"],
            ability=t["ability"],
            skip_first_turn=bool(t["skip_first_turn"]),
            needs_reference=bool(t["needs_reference"]),
            rubric=t["rubric"].strip(),
        )
        for code, t in definition.table["tasks"].items()
    }


@SUITES.register(NAME)
class MTBench101(Suite):
    """MT-Bench-101 in its original JSONL format.

    Args:
        limit_per_task: keep this many dialogues per task, drawn with ``seed`` (the same
            ones on every run), for cheap sweeps; None keeps all 1,388.
        seed: seed of that draw (default: the definition's ``subset.seed``).
        download: fetch the file from its public URL when the directory lacks it.
    """

    env_var = "RESURE_MT_BENCH_101_DIR"

    def __init__(
        self, limit_per_task: int | None = None, seed: int | None = None, download: bool = False
    ):
        if limit_per_task is not None and limit_per_task < 1:
            raise ValueError(f"limit_per_task must be >= 1, got {limit_per_task}")
        self.definition = load_definition(NAME)
        self.tasks = task_specs(self.definition)
        self.limit_per_task = limit_per_task
        self.seed = self.definition.table["subset"]["seed"] if seed is None else seed
        self.download = download

    def load(self, data_dir: str | Path | None = None) -> list[EvalItem]:
        path = locate_files(self.definition, data_dir, self.download)["mtbench101.jsonl"]
        records = read_jsonl_records(path)
        items = [self._item(path, lineno, rec) for lineno, rec in records]
        _check_unique(path, items)
        check_count(self.definition, path, len(items))
        if self.limit_per_task is not None:
            items = self._subset(items)
        logger.info("%s: %d dialogues from %s", NAME, len(items), path)
        return items

    def _item(self, path: Path, lineno: int, rec: Any) -> EvalItem:
        where = f"{path}:{lineno}"
        if not isinstance(rec, dict):
            raise SuiteDataError(f"{where}: a dialogue must be a JSON object")
        task = rec.get("task")
        if task not in self.tasks:
            raise SuiteDataError(
                f"{where}: task {task!r} is not one of the 13 tasks {sorted(self.tasks)}"
            )
        if not isinstance(rec.get("id"), int):
            raise SuiteDataError(f"{where}: 'id' must be an integer, got {rec.get('id')!r}")
        users, bots = split_rounds(where, rec.get("history"), "history", ("user", "bot"))
        spec = self.tasks[task]
        return EvalItem(
            suite=NAME,
            question_id=f"{task}-{rec['id']}",
            category=task,
            turns=users,
            reference=bots,
            history="golden",
            temperature=self.definition.temperature,
            meta={
                "task": task,
                "task_name": spec.name,
                "source_id": rec["id"],
                "scored_turns": list(spec.scored_turns(len(users))),
                "needs_reference": spec.needs_reference,
                "rubric": spec.rubric,
            },
        )

    def _subset(self, items: list[EvalItem]) -> list[EvalItem]:
        by_task: dict[str, list[EvalItem]] = defaultdict(list)
        for item in items:
            by_task[item.category].append(item)
        keep: set[int | str] = set()
        for task in sorted(by_task):
            group = by_task[task]
            n = min(self.limit_per_task, len(group))
            # One generator per task, seeded by (seed, task): a task's draw does not
            # depend on which other tasks the file holds.
            rng = random.Random(f"{self.seed}:{task}")
            keep.update(item.question_id for item in rng.sample(group, n))
        return [item for item in items if item.question_id in keep]


def _check_unique(path: Path, items: Sequence[EvalItem]) -> None:
    seen: set[int | str] = set()
    for item in items:
        if item.question_id in seen:
            raise SuiteDataError(f"{path}: dialogue {item.question_id!r} appears twice")
        seen.add(item.question_id)


# --- aggregation -------------------------------------------------------------------------


@dataclass(frozen=True)
class MTBench101Result:
    """Scores of one model on MT-Bench-101.

    Attributes:
        overall: mean of the task scores (each task weighs the same), or None if no task
            has a scored dialogue.
        tasks: task code -> mean dialogue score.
        dialogues: question id -> dialogue score (minimum over its scored turns).
        dialogues_per_task: task code -> number of scored dialogues.
        failed: question ids left without a score because a scored turn's judgment
            failed or is missing; never counted as a number.
        ignored_turns: judgments of turns the protocol does not score (a skipped first
            turn), as ``(question_id, turn)``.
    """

    overall: float | None
    tasks: dict[str, float]
    dialogues: dict[int | str, float]
    dialogues_per_task: dict[str, int]
    failed: tuple[int | str, ...]
    ignored_turns: tuple[tuple[int | str, int], ...]


def aggregate_mt_bench_101(
    judgments: Iterable[Judgment], items: Sequence[EvalItem] | None = None
) -> MTBench101Result:
    """Dialogue score = min over scored turns; task = mean of dialogues; overall = mean of
    tasks (Bai et al., 2024, Sec. 4).

    Args:
        judgments: one per judged (dialogue, turn); higher scores are better.
        items: the suite's items; they give each dialogue's task and its scored turns, and
            a dialogue with no judgment at all counts as failed. Without them the task
            is read from the question id (``"<task>-<id>"``) and the scored turns from
            the task's ``skip_first_turn``.

    A dialogue fails (and gets no score) when one of its scored turns has a failed
    judgment (``score`` None) or no judgment. Duplicate judgments of one turn raise
    :class:`ValueError`.
    """
    tasks = task_specs()
    by_dialogue = _group_scores(judgments)
    expected = _expected_turns(items, by_dialogue, tasks)
    dialogues: dict[int | str, float] = {}
    failed: list[int | str] = []
    ignored: list[tuple[int | str, int]] = []
    for qid, (_, scored) in expected.items():
        scores = by_dialogue.get(qid, {})
        ignored.extend((qid, t) for t in sorted(scores) if t not in scored)
        kept = [scores.get(t) for t in scored]
        if any(s is None for s in kept) or not kept:
            failed.append(qid)
        else:
            dialogues[qid] = min(kept)
    task_scores = _task_means(dialogues, {q: task for q, (task, _) in expected.items()})
    if failed:
        logger.warning("%d of %d dialogues have no score (failed judgments)",
                       len(failed), len(expected))
    return MTBench101Result(
        overall=fmean(task_scores.values()) if task_scores else None,
        tasks=task_scores,
        dialogues=dialogues,
        dialogues_per_task=_count_per_task(dialogues, expected),
        failed=tuple(failed),
        ignored_turns=tuple(ignored),
    )


def _group_scores(judgments: Iterable[Judgment]) -> dict[int | str, dict[int, float | None]]:
    grouped: dict[int | str, dict[int, float | None]] = defaultdict(dict)
    for j in judgments:
        if j.turn in grouped[j.question_id]:
            raise ValueError(f"two judgments of dialogue {j.question_id!r} turn {j.turn}")
        grouped[j.question_id][j.turn] = j.score
    return grouped


def _expected_turns(
    items: Sequence[EvalItem] | None,
    by_dialogue: Mapping[int | str, Mapping[int, float | None]],
    tasks: Mapping[str, TaskSpec],
) -> dict[int | str, tuple[str, tuple[int, ...]]]:
    if items is not None:
        unknown = set(by_dialogue) - {item.question_id for item in items}
        if unknown:
            raise ValueError(f"judgments of dialogues not among the items: {sorted(unknown)}")
        return {
            item.question_id: (item.category, tuple(item.meta["scored_turns"]))
            for item in items
        }
    expected = {}
    for qid, turns in by_dialogue.items():
        task = str(qid).split("-", 1)[0]
        if task not in tasks:
            raise ValueError(
                f"question id {qid!r} does not start with a task code ('GR-1'); pass items="
            )
        skip = tasks[task].skip_first_turn
        expected[qid] = (task, tuple(t for t in sorted(turns) if not (skip and t == 1)))
    return expected


def _task_means(
    dialogues: Mapping[int | str, float], task_of: Mapping[int | str, str]
) -> dict[str, float]:
    per_task: dict[str, list[float]] = defaultdict(list)
    for qid, score in dialogues.items():
        per_task[task_of[qid]].append(score)
    return {task: fmean(scores) for task, scores in sorted(per_task.items())}


def _count_per_task(
    dialogues: Mapping[int | str, float],
    expected: Mapping[int | str, tuple[str, tuple[int, ...]]],
) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for qid in dialogues:
        counts[expected[qid][0]] += 1
    return dict(sorted(counts.items()))
