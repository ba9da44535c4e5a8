"""Per-model score tables from judgment files (ours and FastChat's).

Rows are keyed by (model, judge model, suite, question, turn). A key met more than once is
a duplicate: FastChat appends a new row each time a match is judged again, so the latest
row (largest ``tstamp``, then the later one in file order) is kept and the others are
counted as duplicates. Failed rows (our ``failure``, FastChat's ``score == -1``) are
counted per model and never averaged. As in FastChat's ``show_result.py``, a turn's score
is the mean over that turn's scored rows and ``overall`` the mean over all scored rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resure.eval.judging import read_judgments

logger = logging.getLogger(__name__)

KEY = ["model", "judge", "suite", "question_id", "turn"]


@dataclass(frozen=True)
class ShowResult:
    """Scores by model, and the rows behind the counts.

    Attributes:
        table: index (model, judge); columns ``turn_<k>`` (mean score), ``overall``,
            ``judged`` (unique rows), ``failures`` and ``duplicates`` (rows dropped).
        kept: the unique rows (one per key).
        dropped: the duplicate rows that were not kept.
    """

    table: pd.DataFrame
    kept: pd.DataFrame
    dropped: pd.DataFrame


def load_frame(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per judgment of ``paths`` with key, score, failure, tstamp and origin.

    Raises:
        ValueError: a path that is a directory or holds no judgments, or a row that is not
            a judgment (naming file, line and the missing field).
        FileNotFoundError: a path that does not exist.
    """
    records = []
    for path in paths:
        if Path(path).is_dir():
            raise ValueError(f"{path} is a directory, expected a judgment JSONL file")
        judgments = read_judgments(path)
        if not judgments:
            raise ValueError(f"no judgments in {path}")
        for line_no, j in enumerate(judgments, start=1):
            records.append(
                {
                    "model": j.model,
                    "judge": j.judge,
                    "suite": j.meta.get("suite", ""),
                    "question_id": j.question_id,
                    "turn": j.turn,
                    "score": j.score,
                    "failure": j.failure,
                    "tstamp": j.tstamp,
                    "file": str(path),
                    "row": line_no,
                }
            )
    columns = [*KEY, "score", "failure", "tstamp", "file", "row"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["score"] = frame["score"].astype(float)
    return frame


def summarize(frame: pd.DataFrame) -> ShowResult:
    """The per-model table of :class:`ShowResult` from :func:`load_frame` rows."""
    ordered = frame.reset_index(drop=True).rename_axis("order").reset_index()
    ordered = ordered.sort_values(["tstamp", "order"], kind="stable")
    is_dup = ordered.duplicated(subset=KEY, keep="last")
    kept, dropped = ordered[~is_dup].sort_values("order"), ordered[is_dup].sort_values("order")
    scored = kept[kept["score"].notna()]
    by = ["model", "judge"]
    turns = scored.pivot_table(index=by, columns="turn", values="score", aggfunc="mean")
    turns.columns = [f"turn_{t}" for t in turns.columns]
    table = turns.join(scored.groupby(by)["score"].mean().rename("overall"), how="outer")
    counts = pd.DataFrame(
        {
            "judged": kept.groupby(by).size(),
            "failures": kept["score"].isna().groupby([kept[c] for c in by]).sum(),
            "duplicates": dropped.groupby(by).size(),
        }
    )
    table = counts.join(table, how="left")[[*table.columns, *counts.columns]]
    for col in counts.columns:
        table[col] = table[col].fillna(0).astype(int)
    return ShowResult(
        table=table, kept=kept.drop(columns="order"), dropped=dropped.drop(columns="order")
    )


def lower_is_better(judges: Sequence[str]) -> list[str]:
    """The registered judges among ``judges`` whose score is a cost (``reference_nll``)."""
    from resure.eval.judges import JUDGES  # registers the built-in judges

    return sorted({j for j in judges if j in JUDGES and not JUDGES.get(j).higher_is_better})


def notes(result: ShowResult) -> list[str]:
    """Readable lines on the direction of costs, failure reasons and dropped duplicates."""
    lines = []
    costs = lower_is_better(result.table.index.get_level_values("judge").unique().tolist())
    if costs:
        lines.append(f"lower is better for judge {', '.join(costs)}; higher for the others")
    failed = result.kept[result.kept["score"].isna()]
    for (model, judge), group in failed.groupby(["model", "judge"]):
        reasons = ", ".join(f"{r} {n}" for r, n in group["failure"].value_counts().items())
        lines.append(f"{model} ({judge}): failures: {reasons}")
    for (model, judge), group in result.dropped.groupby(["model", "judge"]):
        n_failed = int(group["score"].isna().sum())
        pairs = zip(group["question_id"], group["turn"], strict=True)
        keys = ", ".join(f"q{q}/t{t}" for q, t in pairs)
        lines.append(
            f"{model} ({judge}): {len(group)} duplicate row(s) dropped, the latest kept "
            f"({n_failed} of the dropped were failures): {keys}"
        )
    return lines


def render(result: ShowResult) -> str:
    """The table and its notes as text."""
    text = result.table.to_string(float_format=lambda x: f"{x:.3f}", na_rep="n/a")
    extra = notes(result)
    return text + ("\n\n" + "\n".join(extra) if extra else "")
