"""MT-Bench (Zheng et al., 2023): 80 two-turn questions in 8 categories, graded per turn.

Reads FastChat's llm_judge files from a directory the user gives (``data_dir`` or
``RESURE_MT_BENCH_DIR``):

- ``question.jsonl``: ``question_id``, ``category``, ``turns`` (two user messages) and,
  for some questions, an inline ``reference``;
- ``reference_answer_gpt-4.jsonl`` (or FastChat's ``reference_answer/gpt-4.jsonl``): GPT-4
  reference answers in the model-answer schema (``choices[0].turns``);
- ``judge_prompts.jsonl`` (beside the questions, or one level up as in FastChat's tree).

Protocol settings (per-category temperatures, which categories are graded against the
reference answers, which templates grade which turn) live in ``mt_bench.toml`` beside this
module. Items use the model's own history, as in FastChat.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from resure.eval.judges.prompts import JudgePrompt, load_judge_prompts
from resure.eval.suites.base import SUITES, Suite
from resure.eval.types import EvalItem

logger = logging.getLogger(__name__)

ENV_VAR = "RESURE_MT_BENCH_DIR"


@dataclass(frozen=True)
class MTBenchFiles:
    """The three files of one MT-Bench data directory."""

    questions: Path
    reference_answers: Path
    judge_prompts: Path


def protocol() -> dict[str, Any]:
    """The settings of ``mt_bench.toml``."""
    text = resources.files("resure.eval.suites").joinpath("mt_bench.toml").read_text("utf-8")
    return tomllib.loads(text)


@SUITES.register("mt_bench", aliases=("mt-bench",))
class MTBench(Suite):
    """The MT-Bench suite; :meth:`load` returns its 80 items with their judge templates.

    Each item's ``meta`` holds ``judge_prompts`` (the :class:`JudgePrompt` grading turn 1
    and turn 2), ``inline_reference`` (the ``reference`` field of question.jsonl, or None)
    and ``source`` (the questions file).
    """

    env_var = ENV_VAR

    def load(self, data_dir: str | Path | None = None) -> list[EvalItem]:
        files = locate_files(data_dir)
        settings = protocol()
        prompts = load_judge_prompts(files.judge_prompts)
        templates = {
            kind: _templates(prompts, settings["judge"][kind], files.judge_prompts)
            for kind in ("general", "reference_guided")
        }
        ref_categories = set(settings["judge"]["reference_categories"])
        references = _read_references(files.reference_answers)
        items = []
        for lineno, row in _read_rows(files.questions):
            category = row["category"]
            temperature = settings["temperature"].get(category)
            if temperature is None:
                raise ValueError(
                    f"{files.questions}:{lineno}: category {category!r} has no temperature in "
                    f"mt_bench.toml (known: {', '.join(sorted(settings['temperature']))})"
                )
            needs_ref = category in ref_categories
            reference = references.get(row["question_id"]) if needs_ref else None
            if needs_ref and reference is None:
                raise ValueError(
                    f"{files.reference_answers}: no reference answer for question "
                    f"{row['question_id']} ({category}), which is graded against one"
                )
            items.append(
                EvalItem(
                    suite="mt_bench",
                    question_id=row["question_id"],
                    category=category,
                    turns=tuple(row["turns"]),
                    reference=reference,
                    history="own",
                    temperature=float(temperature),
                    meta={
                        "judge_prompts": templates["reference_guided" if needs_ref else "general"],
                        "inline_reference": row.get("reference"),
                        "source": str(files.questions),
                    },
                )
            )
        logger.info("MT-Bench: %d questions from %s", len(items), files.questions)
        return items


def locate_files(data_dir: str | Path | None = None) -> MTBenchFiles:
    """Find the three MT-Bench files under ``data_dir`` (or ``$RESURE_MT_BENCH_DIR``)."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise FileNotFoundError(
            "MT-Bench data directory not given: pass --data-dir DIR (data_dir=...) or set "
            f"{ENV_VAR}=DIR, where DIR holds question.jsonl, reference_answer_gpt-4.jsonl and "
            "judge_prompts.jsonl. They are FastChat's llm_judge data (fastchat/llm_judge/data/"
            "mt_bench in the lm-sys/FastChat repository), which can be downloaded when the "
            "network allows."
        )
    root = Path(data_dir)
    names = protocol()["files"]
    return MTBenchFiles(
        questions=_first_existing(root, [names["questions"]], "questions"),
        reference_answers=_first_existing(root, names["reference_answers"], "reference answers"),
        judge_prompts=_first_existing(root, names["judge_prompts"], "judge prompts"),
    )


def _first_existing(root: Path, candidates: list[str], what: str) -> Path:
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"MT-Bench {what} not found in {root} (looked for {', '.join(candidates)}); pass "
        f"--data-dir or set {ENV_VAR} to FastChat's llm_judge data/mt_bench directory, which "
        "can be downloaded when the network allows"
    )


def _templates(prompts: dict[str, JudgePrompt], names: list[str], path: Path):
    missing = [n for n in names if n not in prompts]
    if missing:
        raise ValueError(f"{path}: judge prompt(s) {', '.join(missing)} not found")
    return tuple(prompts[n] for n in names)


def _read_rows(path: Path):
    """(line number, validated question row) pairs of question.jsonl."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
            _check_question(row, path, lineno)
            yield lineno, row


def _check_question(row: dict, path: Path, lineno: int) -> None:
    if not isinstance(row.get("question_id"), int):
        raise ValueError(f"{path}:{lineno}: question_id must be an integer")
    if not isinstance(row.get("category"), str):
        raise ValueError(f"{path}:{lineno}: question {row['question_id']}: category missing")
    turns = row.get("turns")
    if not (isinstance(turns, list) and len(turns) == 2 and all(isinstance(t, str) for t in turns)):
        raise ValueError(
            f"{path}:{lineno}: question {row['question_id']}: turns must be two strings"
        )


def _read_references(path: Path) -> dict[int, tuple[str, ...]]:
    """Reference turns by question id from a model-answer JSONL file."""
    references = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                turns = row["choices"][0]["turns"]
                qid = row["question_id"]
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
                raise ValueError(
                    f"{path}:{lineno}: not a model-answer row with choices[0].turns ({e})"
                ) from e
            if not (len(turns) == 2 and all(isinstance(t, str) for t in turns)):
                raise ValueError(f"{path}:{lineno}: question {qid}: reference turns must be two")
            references[qid] = tuple(turns)
    return references
