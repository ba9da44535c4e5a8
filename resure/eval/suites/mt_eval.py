"""MT-Eval's follow-up task: MT-Bench questions extended to five rounds, own history.

File format (``mt-bench_extended.jsonl``, one conversation a line)::

    {"question_id": 81, "category": "writing",
     "conversation": [{"user": "...", "sys": "...", "id": "81_0"}, ...]}

The ``user`` turns become the item's turns and the ``sys`` turns its ``reference``
(shown to reference-based judges, never to the model: the history mode is ``"own"``).
Question ids are MT-Bench's integers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from resure.eval.suites.base import SUITES, Suite
from resure.eval.suites.definitions import (
    SuiteDataError,
    check_count,
    check_unique_ids,
    load_definition,
    locate_files,
    read_jsonl_records,
    split_rounds,
)
from resure.eval.types import EvalItem

logger = logging.getLogger(__name__)

NAME = "mt_eval_followup"
FILE = "mt-bench_extended.jsonl"


@SUITES.register(NAME, aliases=("mt_eval",))
class MTEvalFollowup(Suite):
    """MT-Eval follow-up conversations in their original JSONL format.

    Args:
        download: fetch the file from its public URL when the directory lacks it.
    """

    env_var = "RESURE_MT_EVAL_DIR"

    def __init__(self, download: bool = False):
        self.definition = load_definition(NAME)
        self.download = download

    def load(self, data_dir: str | Path | None = None) -> list[EvalItem]:
        path = locate_files(self.definition, data_dir, self.download)[FILE]
        items = [self._item(path, lineno, rec) for lineno, rec in read_jsonl_records(path)]
        check_unique_ids(items, path)
        check_count(self.definition, path, len(items))
        logger.info("%s: %d conversations from %s", NAME, len(items), path)
        return items

    def _item(self, path: Path, lineno: int, rec: Any) -> EvalItem:
        where = f"{path}:{lineno}"
        if not isinstance(rec, dict):
            raise SuiteDataError(f"{where}: a conversation must be a JSON object")
        qid, category = rec.get("question_id"), rec.get("category")
        if not isinstance(qid, int):
            raise SuiteDataError(f"{where}: 'question_id' must be an integer, got {qid!r}")
        if not isinstance(category, str):
            raise SuiteDataError(f"{where}: 'category' must be a string")
        conversation = rec.get("conversation")
        users, refs = split_rounds(where, conversation, "conversation", ("user", "sys"))
        return EvalItem(
            suite=NAME,
            question_id=qid,
            category=category,
            turns=users,
            reference=refs,
            history="own",
            temperature=self.definition.temperature,
            meta={"turn_ids": [t.get("id") for t in conversation]},
        )
