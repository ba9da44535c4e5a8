"""MT-Bench (Zheng et al., 2023): 80 two-turn questions in 8 categories, graded per turn.

Reads FastChat's llm_judge files from a directory the user gives (``data_dir`` or
``RESURE_MT_BENCH_DIR``), as named in ``suites/mt_bench.toml``:

- ``question.jsonl``: ``question_id``, ``category``, ``turns`` (two user messages) and,
  for some questions, an inline ``reference``;
- ``reference_answer_gpt-4.jsonl`` (FastChat: ``reference_answer/gpt-4.jsonl``): GPT-4
  reference answers in the model-answer schema (``choices[0].turns``);
- ``judge_prompts.jsonl`` (FastChat: one level up, in ``data/``).

The definition also holds the protocol: per-category temperatures, the categories graded
against the reference answers, and the templates grading each turn. Items use the
model's own history, as in FastChat.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from resure.eval.judges.prompts import JudgePrompt, load_judge_prompts
from resure.eval.suites.base import SUITES, Suite
from resure.eval.suites.definitions import (
    SuiteDataError,
    SuiteDefinition,
    check_count,
    check_unique_ids,
    load_definition,
    locate_files,
    read_jsonl_records,
)
from resure.eval.types import EvalItem

logger = logging.getLogger(__name__)

NAME = "mt_bench"
ENV_VAR = "RESURE_MT_BENCH_DIR"
QUESTIONS = "question.jsonl"
REFERENCES = "reference_answer_gpt-4.jsonl"
PROMPTS = "judge_prompts.jsonl"


@SUITES.register(NAME, aliases=("mt-bench",))
class MTBench(Suite):
    """The MT-Bench suite; :meth:`load` returns its 80 items with their judge templates.

    Each item's ``meta`` holds ``judge_prompts`` (the :class:`JudgePrompt` grading turn 1
    and the one grading turn 2), ``inline_reference`` (the ``reference`` field of
    question.jsonl, or None; FastChat's single-answer grading does not use it) and
    ``source`` (the questions file). ``reference`` is set for the reference-guided
    categories only.

    Args:
        download: fetch the files from FastChat's repository when the directory lacks
            them (needs network access).
    """

    env_var = ENV_VAR

    def __init__(self, download: bool = False):
        self.definition = load_definition(NAME)
        self.download = download

    def load(self, data_dir: str | Path | None = None) -> list[EvalItem]:
        files = find_files(self.definition, data_dir, self.download)
        judge = self.definition.table["judge"]
        prompts = load_judge_prompts(files[PROMPTS])
        templates = {
            kind: _templates(prompts, judge[kind], files[PROMPTS])
            for kind in ("general", "reference_guided")
        }
        ref_categories = set(judge["reference_categories"])
        references = _read_references(files[REFERENCES])
        items = []
        for lineno, row in read_jsonl_records(files[QUESTIONS]):
            where = f"{files[QUESTIONS]}:{lineno}"
            _check_question(row, where)
            needs_ref = row["category"] in ref_categories
            reference = references.get(row["question_id"]) if needs_ref else None
            if needs_ref and reference is None:
                raise SuiteDataError(
                    f"{files[REFERENCES]}: no reference answer for question "
                    f"{row['question_id']} ({row['category']}), which is graded against one"
                )
            items.append(
                EvalItem(
                    suite=NAME,
                    question_id=row["question_id"],
                    category=row["category"],
                    turns=tuple(row["turns"]),
                    reference=reference,
                    history="own",
                    temperature=self._temperature(row["category"], where),
                    meta={
                        "judge_prompts": templates["reference_guided" if needs_ref else "general"],
                        "inline_reference": row.get("reference"),
                        "source": str(files[QUESTIONS]),
                    },
                )
            )
        check_unique_ids(items, files[QUESTIONS])
        check_count(self.definition, files[QUESTIONS], len(items))
        logger.info("%s: %d questions from %s", NAME, len(items), files[QUESTIONS])
        return items

    def _temperature(self, category: str, where: str) -> float:
        table = self.definition.table["category_temperature"]
        if category not in table:
            raise SuiteDataError(
                f"{where}: category {category!r} has no temperature in suites/mt_bench.toml "
                f"(known: {', '.join(sorted(table))})"
            )
        return float(table[category])


def find_files(
    definition: SuiteDefinition, data_dir: str | Path | None, download: bool = False
) -> dict[str, Path]:
    """The three files, side by side in the directory or in FastChat's own tree."""
    try:
        return locate_files(definition, data_dir, download)
    except SuiteDataError:
        directory = data_dir if data_dir is not None else os.environ.get(ENV_VAR)
        tree = _fastchat_tree(definition, directory)
        if tree is None:
            raise
        return tree


def _fastchat_tree(definition: SuiteDefinition, directory: Any) -> dict[str, Path] | None:
    if not directory:
        return None
    root = Path(directory).expanduser()
    paths = {name: root / name for name in definition.files}
    paths.update({name: root / rel for name, rel in definition.table["fastchat_tree"].items()})
    return paths if all(p.is_file() for p in paths.values()) else None


def _templates(prompts: dict[str, JudgePrompt], names: list[str], path: Path):
    missing = [n for n in names if n not in prompts]
    if missing:
        raise SuiteDataError(f"{path}: judge prompt(s) {', '.join(missing)} not found")
    return tuple(prompts[n] for n in names)


def _check_question(row: Any, where: str) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("question_id"), int):
        raise SuiteDataError(f"{where}: question_id must be an integer")
    qid = row["question_id"]
    if not isinstance(row.get("category"), str):
        raise SuiteDataError(f"{where}: question {qid}: category must be a string")
    turns = row.get("turns")
    if not (isinstance(turns, list) and len(turns) == 2 and all(isinstance(t, str) for t in turns)):
        raise SuiteDataError(f"{where}: question {qid}: turns must be two strings")


def _read_references(path: Path) -> dict[int, tuple[str, ...]]:
    """Reference turns by question id from a model-answer JSONL file."""
    references = {}
    for lineno, row in read_jsonl_records(path):
        try:
            turns = row["choices"][0]["turns"]
            qid = row["question_id"]
        except (KeyError, IndexError, TypeError) as e:
            raise SuiteDataError(
                f"{path}:{lineno}: not a model-answer row with question_id and "
                f"choices[0].turns ({e!r})"
            ) from e
        if not (isinstance(turns, list) and len(turns) == 2
                and all(isinstance(t, str) for t in turns)):
            raise SuiteDataError(f"{path}:{lineno}: question {qid}: reference turns must be two")
        references[qid] = tuple(turns)
    return references
