"""The aggregate stage: CSV tables, PNG plots and ``report.md`` in the results folder.

Files (all CSVs have one header row; NaN is written as an empty cell):

``scores.csv``: one row per (suite, judge, model, method, mixture, size, seed).
    ``direction`` (``higher`` or ``lower`` is better), ``mean`` (mean item score; an
    item's score is the mean of its judged turns), ``sem`` (standard error over items),
    ``n_items``, ``n_judged`` / ``n_failed`` (turns). Size 0 is the base model, repeated
    for every method, mixture and seed.
``per_turn.csv``: the same keys plus ``turn`` (1-based): ``mean``, ``n_judged``,
    ``n_failed``.
``curves.csv``: seeds pooled, per (suite, judge, model, method, mixture, size): ``mean``
    (mean over seeds), ``sem`` (over all seed x item scores), ``n_seeds``, ``n_items``,
    ``n_failed``. These are the plotted points.
``leaderboard.csv``: one row per configuration (suite, judge, model, method, mixture):
    ``rho`` (Spearman's rho between training samples and the mean *quality* over items,
    one point per (seed, size); quality is the score, negated for ``lower`` judges, so a
    positive rho always means "improves with data"), ``p_value``,
    ``ci_low`` / ``ci_high`` (bootstrap over seeds and items), ``n_points`` (the (seed,
    size) means rho is computed on), ``n_sizes``,
    ``n_seeds``, ``n_items``, ``n_failed``, ``score_base`` (size 0), ``score_first``
    (smallest size), ``score_last`` (largest size), all raw scores, seeds pooled.
``corruption_effect.csv``: per (suite, judge, model, method, mixture, size) of every
    corrupted mixture: ``delta_quality`` = quality on that mixture minus quality on the
    clean reference mixture, paired by seed and item, with ``sem`` and ``n_pairs``
    (negative: the corruption hurts).
``weighting.csv``: per training pass (model, method, mixture, seed): ``turns``,
    ``mean_weight``, ``corrupted_seen`` / ``corrupted_downweighted`` (share of corrupted
    turns given a weight below 1), ``clean_seen`` / ``clean_downweighted``,
    ``context_corrupted_seen`` / ``context_corrupted_downweighted``.
``data.csv``: per pool (mixture, data seed) and prefix size: dialogues, assistant turns,
    corrupted turns and rate, turns in corrupted context, counts per kind.
``failures.csv``: per (suite, judge, model, method, mixture, size, failure reason): turns.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from resure.io import atomic_write_text, read_jsonl
from resure.sweep import analysis, plots

if TYPE_CHECKING:
    from resure.sweep.runner import Sweep

logger = logging.getLogger(__name__)

FLOAT_FORMAT = "%.6g"


def write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False, float_format=FLOAT_FORMAT))


def write_outputs(sweep: Sweep) -> dict[str, Any]:
    """Every table, plot and the report of ``sweep``; returns counts for the marker."""
    out = sweep.results
    turns = pd.DataFrame(sweep.judgment_rows(), columns=analysis.TURN_COLUMNS)
    turns["score"] = turns["score"].astype(float)
    a = sweep.config.analysis
    tables = {
        "scores": analysis.score_table(turns),
        "per_turn": analysis.per_turn_table(turns),
        "curves": analysis.curve_table(turns),
    }
    spear = analysis.spearman_table(turns, a.include_base, a.bootstrap_resamples,
                                    a.confidence_level, a.bootstrap_seed)
    tables["leaderboard"] = leaderboard(spear, tables["curves"])
    tables["corruption_effect"] = corruption_effect(turns, reference_mixture(sweep))
    steps, positions, position_weights = weighting_logs(sweep)
    tables["weighting"] = weighting_shares(steps)
    tables["data"] = data_table(sweep)
    tables["failures"] = failure_table(turns)
    for name, df in tables.items():
        write_csv(df, out / f"{name}.csv")
    mixtures = [m.label for m in sweep.config.mixtures]
    plot_dir = out / "plots"
    figures = {
        "curves": plots.plot_curves(tables["curves"], plot_dir, mixtures),
        "weights": plots.plot_weight_trajectories(position_weights, plot_dir, mixtures),
        "positions": plots.plot_position_stats(positions, plot_dir, mixtures),
        "downweighted": plots.plot_downweighted(tables["weighting"], plot_dir, mixtures),
    }
    atomic_write_text(out / "report.md", render_report(sweep, tables, figures))
    return {"judgments": int(len(turns)), "failed": int(turns["score"].isna().sum())}


# ---------------------------------------------------------------------- tables


def leaderboard(spear: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Spearman rows plus the seed-pooled score at the base, first and last size."""
    keys = analysis.CONFIG_KEYS
    rows = []
    for _, r in spear.iterrows():
        c = curves
        for k in keys:
            c = c[c[k] == r[k]]
        by_size = c.set_index("size")["mean"]
        trained = sorted(s for s in by_size.index if s > 0)
        rows.append({
            "score_base": by_size.get(0, np.nan),
            "score_first": by_size[trained[0]] if trained else np.nan,
            "score_last": by_size[trained[-1]] if trained else np.nan,
        })
    extra = pd.DataFrame(rows, index=spear.index,
                         columns=["score_base", "score_first", "score_last"])
    return pd.concat([spear, extra], axis=1)


def reference_mixture(sweep: Sweep) -> str | None:
    """The first mixture with no corruption (the clean reference), if any."""
    for m in sweep.config.mixtures:
        if m.corrupt_fraction == 0:
            return m.label
    return None


def corruption_effect(turns: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Quality on each corrupted mixture minus quality on ``reference``, paired by
    (seed, item) at the same size (see module docstring)."""
    columns = [*analysis.CONFIG_KEYS, "size", "direction", "delta_quality", "sem", "n_pairs"]
    if reference is None or turns.empty:
        return pd.DataFrame(columns=columns)
    items = analysis.item_table(turns)
    items = items[items["size"] > 0]
    items = items.assign(quality=[
        float(analysis.quality([s], d)[0]) for s, d in zip(items["item_score"],
                                                         items["direction"], strict=True)
    ])
    keys = ["suite", "judge", "model", "method", "size", "seed", "question_id"]
    ref = items[items["mixture"] == reference].set_index(keys)["quality"]
    rows = []
    for (suite, judge, model, method, mixture, size, direction), g in items[
        items["mixture"] != reference
    ].groupby(["suite", "judge", "model", "method", "mixture", "size", "direction"], sort=True):
        joined = g.set_index(keys)["quality"].to_frame("q").join(ref.rename("r"), how="inner")
        diff = (joined["q"] - joined["r"]).dropna().to_numpy()
        rows.append({
            "suite": suite, "judge": judge, "model": model, "method": method,
            "mixture": mixture, "size": size, "direction": direction,
            "delta_quality": float(diff.mean()) if diff.size else np.nan,
            "sem": float(stats.sem(diff)) if diff.size > 1 else np.nan,
            "n_pairs": int(diff.size),
        })
    return pd.DataFrame(rows, columns=columns)


def weighting_logs(sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rows of every planned pass's log: per step; per (step, position) loss statistics of
    the method; per (step, position) mean weight given by the method."""
    step_rows, pos_rows, weight_rows = [], [], []
    for p in sweep.plan.passes:
        path = sweep.results / "passes" / p.dirname / "weighting_log.jsonl"
        if not path.is_file():
            continue
        labels = {"model": p.model.label, "method": p.method.label,
                  "mixture": p.data.mixture.label, "seed": p.seed}
        for row in read_jsonl(path):
            step = {**labels, "step": row.get("step"), "samples_seen": row.get("samples_seen"),
                    "loss": row.get("loss"), "turns": row.get("turns"),
                    "mean_weight": row.get("mean_weight")}
            for group in ("corrupted", "clean", "context_corrupted"):
                g = row.get(group) or {}
                step[f"{group}_seen"] = g.get("seen", 0)
                step[f"{group}_down"] = g.get("down_weighted", 0)
            step_rows.append(step)
            for pos, figures in (row.get("by_position") or {}).items():
                weight_rows.append({**labels, "samples_seen": row.get("samples_seen"),
                                    "position": int(pos), "seen": figures.get("seen"),
                                    "mean_weight": figures.get("mean_weight")})
            for pos, figures in (row.get("positions") or {}).items():
                if figures.get("loss_above") is None:
                    continue
                pos_rows.append({**labels, "samples_seen": row.get("samples_seen"),
                                 "position": int(pos), "mean": figures.get("mean"),
                                 "loss_above": figures.get("loss_above")})
    return pd.DataFrame(step_rows), pd.DataFrame(pos_rows), pd.DataFrame(weight_rows)


def weighting_shares(steps: pd.DataFrame) -> pd.DataFrame:
    """Per pass: mean weight and the share of each turn group down-weighted."""
    columns = ["model", "method", "mixture", "seed", "turns", "mean_weight"]
    for g in ("corrupted", "clean", "context_corrupted"):
        columns += [f"{g}_seen", f"{g}_downweighted"]
    if steps.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, g in steps.groupby(["model", "method", "mixture", "seed"], sort=True):
        turns = g["turns"].fillna(0)
        weighted = (g["mean_weight"].fillna(0) * turns).sum()
        row = dict(zip(["model", "method", "mixture", "seed"], key, strict=True))
        row["turns"] = int(turns.sum())
        row["mean_weight"] = weighted / turns.sum() if turns.sum() else np.nan
        for group in ("corrupted", "clean", "context_corrupted"):
            seen = int(g[f"{group}_seen"].sum())
            row[f"{group}_seen"] = seen
            row[f"{group}_downweighted"] = g[f"{group}_down"].sum() / seen if seen else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def data_table(sweep: Sweep) -> pd.DataFrame:
    """Corruption counts of every pool and of its prefixes (from the prepare stage)."""
    rows = []
    for job in sweep.plan.data_jobs:
        path = sweep.results / "data" / f"{job.dirname}.json"
        if not path.is_file():
            continue
        st = json.loads(path.read_text(encoding="utf-8"))
        for size, s in st["prefixes"].items():
            rows.append({
                "mixture": job.mixture.label, "data_seed": job.data_seed, "size": int(size),
                "dialogues": s["dialogues"], "assistant_turns": s["assistant_turns"],
                "corrupted_turns": s["corrupted_turns"], "rate": s["rate"],
                "context_corrupted_turns": s["context_corrupted_turns"],
                **{f"kind_{k}": v for k, v in sorted(s["by_kind"].items())},
            })
    return pd.DataFrame(rows).fillna(0) if rows else pd.DataFrame(
        columns=["mixture", "data_seed", "size", "dialogues", "assistant_turns",
                 "corrupted_turns", "rate", "context_corrupted_turns"])


def failure_table(turns: pd.DataFrame) -> pd.DataFrame:
    keys = [*analysis.CONFIG_KEYS, "size", "failure"]
    failed = turns[turns["score"].isna()]
    if failed.empty:
        return pd.DataFrame(columns=[*keys, "turns"])
    failed = failed.assign(failure=failed["failure"].fillna("no_score"))
    return failed.groupby(keys, sort=True).size().rename("turns").reset_index()


# ---------------------------------------------------------------------- report


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _md_table(df: pd.DataFrame, columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for _, r in df.iterrows()]
    return "\n".join([head, rule, *body])


def render_report(sweep: Sweep, tables: dict[str, pd.DataFrame],
                  figures: dict[str, Any]) -> str:
    """``report.md``: setup, leaderboard, curves, corruption effect, weighting, failures."""
    c = sweep.config
    rel = sweep.results
    lines = [f"# Sweep `{c.name}`", ""]
    lines += _setup_lines(sweep)
    if sweep.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in sweep.notes]]
    lb = tables["leaderboard"].copy()
    lines += ["", "## Leaderboard: Spearman's rho of quality vs training samples", "",
              "Positive rho means the score improves with more data (for judges where lower "
              "is better the score is negated first). Size 0 (the base model) is "
              + ("included." if c.analysis.include_base else "left out of rho."),
              f"Interval: {c.analysis.confidence_level:.0%} bootstrap over seeds and items "
              f"({c.analysis.bootstrap_resamples} resamples).", ""]
    if not lb.empty:
        lb["ci"] = [f"[{_fmt(lo)}, {_fmt(hi)}]" for lo, hi in zip(lb["ci_low"], lb["ci_high"],
                                                                 strict=True)]
        lines.append(_md_table(lb, ["suite", "judge", "direction", "model", "method",
                                    "mixture", "rho", "ci", "p_value", "score_base",
                                    "score_first", "score_last", "n_failed"]))
    lines += ["", "## Score vs number of training samples", ""]
    for path in figures["curves"]:
        lines.append(f"![{path.stem}]({path.relative_to(rel).as_posix()})")
    lines += ["", "Points: mean over seeds; error bars: standard error over seed x item "
              "scores (`curves.csv`)."]
    effect = tables["corruption_effect"]
    if not effect.empty:
        lines += ["", "## Effect of the corruption (vs the clean mixture, same size, seed and "
                  "item)", "", "Negative `delta_quality`: the corrupted data hurt.", "",
                  _md_table(effect, ["suite", "judge", "method", "mixture", "size",
                                     "delta_quality", "sem", "n_pairs"])]
    lines += _weighting_lines(tables["weighting"], figures, rel)
    lines += _data_lines(tables["data"])
    lines += _failure_lines(tables)
    lines += ["", "## Columns of the CSV files", "", _columns_doc(), ""]
    return "\n".join(lines)


def _columns_doc() -> str:
    """The "Files" part of this module's docstring, as Markdown."""
    text = __doc__.split("Files (", 1)[1]
    lines = ("Files (" + text).strip().splitlines()
    # Each file's entry starts at column 0: make it a list item; its indented lines
    # continue the item.
    items = [f"- {line}" if line.startswith("``") else line for line in lines]
    return "\n".join(items).replace("``", "`")


def _setup_lines(sweep: Sweep) -> list[str]:
    c = sweep.config
    mix = "; ".join(
        f"{m.label} ({m.corrupt_fraction:.0%} of assistant turns corrupted"
        + (": " + ", ".join(f"{k} {w:.2f}" for k, w in m.kinds) if m.kinds else "") + ")"
        for m in c.mixtures
    )
    suites = "; ".join(
        f"{s.label} ({', '.join(f'{u.judge} at sizes {u.sizes}' for u in s.judges)})"
        for s in c.suites
    )
    methods = ", ".join(f"{m.label} ({m.method} {m.options})" for m in c.methods)
    return [
        f"- models: {', '.join(f'{m.label} ({m.name})' for m in c.models)}",
        f"- methods: {methods}",
        f"- mixtures: {mix}",
        f"- sizes: {list(c.sizes)} (+ base model at 0: {c.include_base}); seeds: "
        f"{list(c.seeds)}",
        f"- suites: {suites}",
        f"- training: {c.train}",
    ]


def _weighting_lines(shares: pd.DataFrame, figures: dict[str, Any], rel: Path) -> list[str]:
    lines = ["", "## Weighting diagnostics", ""]
    if shares.empty:
        return lines + ["No weighting logs found."]
    agg = shares.groupby(["method", "mixture"], sort=True).mean(numeric_only=True).reset_index()
    lines.append(_md_table(agg, ["method", "mixture", "mean_weight", "corrupted_downweighted",
                                 "clean_downweighted", "context_corrupted_downweighted"]))
    lines += ["", "Shares of turns given a weight below 1 over the whole pass, seeds averaged "
              "(`weighting.csv`).", ""]
    for key in ("downweighted", "weights", "positions"):
        path = figures.get(key)
        if path is not None:
            lines.append(f"![{path.stem}]({path.relative_to(rel).as_posix()})")
    return lines


def _data_lines(data: pd.DataFrame) -> list[str]:
    if data.empty:
        return []
    agg = data.groupby(["mixture", "size"], sort=True).mean(numeric_only=True).reset_index()
    return ["", "## Training data", "", "Corrupted share of assistant turns per training "
            "size (means over data seeds; `data.csv`).", "",
            _md_table(agg, ["mixture", "size", "dialogues", "assistant_turns",
                            "corrupted_turns", "rate", "context_corrupted_turns"])]


def _failure_lines(tables: dict[str, pd.DataFrame]) -> list[str]:
    scores = tables["scores"]
    failed = int(scores["n_failed"].sum()) if not scores.empty else 0
    judged = int(scores["n_judged"].sum()) if not scores.empty else 0
    lines = ["", "## Failures", "",
             f"{failed} of {failed + judged} judged turns have no score "
             "(counted per curve; base-model turns repeat in every curve)."]
    if failed:
        lines += ["", _md_table(tables["failures"], ["suite", "judge", "method", "mixture",
                                                     "size", "failure", "turns"])]
    return lines
