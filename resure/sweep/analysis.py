"""Score tables and the Spearman analysis of score against number of training samples.

Input: one row per judged (run, item, turn) with the columns of :data:`TURN_COLUMNS`
(``score`` NaN where ``failure`` says why the judge gave none). Outputs, as pandas
frames:

- :func:`score_table`: per (suite, judge, model, method, mixture, size, seed): mean score,
  standard error, items, judged and failed turns.
- :func:`per_turn_table`: the mean score of each turn position for the same keys.
- :func:`curve_table`: per (..., size), seeds pooled: the plotted points.
- :func:`spearman_table`: per (suite, judge, model, method, mixture): Spearman's rho
  between the number of training samples and the quality, its p-value and a bootstrap
  confidence interval over seeds and items.

Definitions.
    item score: mean of the item's judged turns (failed turns are left out and counted).
    mean score: mean of the item scores; standard error: ``scipy.stats.sem`` over them.
    quality: the score for judges where higher is better, its negation where lower is
    better (``reference_nll``), so that a positive rho always means "improves with data".
    rho: ``scipy.stats.spearmanr`` between the number of training samples and the mean
    quality over items, with one point per (seed, size); size 0 (the base model, shared
    by every method and mixture) is included when ``include_base`` is true, the default:
    the untrained model is the natural start of every curve, it is common to all methods
    so it favours none, and with it rho also says whether fine-tuning on the data helps
    at all rather than only whether more of it helps more. Items are
    averaged first because the differences between items (some dialogues are much harder
    than others) would otherwise swamp the effect of the data size. The p-value is
    spearmanr's for those few points (sizes x seeds).
    bootstrap: seeds are resampled with replacement, then items with replacement (the
    same items at every size and seed, keeping the pairing); the means and rho are
    recomputed with spearmanr on each resample; the interval is the percentile interval
    of those rhos.

Notes:
    With two seeds the seed level of the bootstrap has only three distinct outcomes;
    the interval then mostly reflects item sampling.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

logger = logging.getLogger(__name__)

RUN_KEYS = ["suite", "judge", "model", "method", "mixture", "size", "seed"]
CONFIG_KEYS = ["suite", "judge", "model", "method", "mixture"]
TURN_COLUMNS = [*RUN_KEYS, "direction", "question_id", "turn", "score", "failure"]


@dataclass(frozen=True)
class SpearmanResult:
    """Spearman's rho of quality against samples, with its bootstrap interval."""

    rho: float
    pvalue: float
    ci_low: float
    ci_high: float
    n_points: int
    n_resamples: int


def quality(scores: pd.Series | np.ndarray, direction: str) -> np.ndarray:
    """Scores oriented so that higher is better (``direction`` "lower" negates)."""
    values = np.asarray(scores, dtype=float)
    if direction == "lower":
        return -values
    if direction == "higher":
        return values
    raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")


def item_table(turns: pd.DataFrame) -> pd.DataFrame:
    """Per (run, item): ``item_score`` (mean of judged turns), judged and failed turns."""
    _check_columns(turns)
    df = turns.assign(judged=turns["score"].notna(), failed=turns["score"].isna())
    keys = [*RUN_KEYS, "direction", "question_id"]
    grouped = df.groupby(keys, dropna=False, sort=True)
    out = grouped.agg(
        item_score=("score", "mean"), judged=("judged", "sum"), failed=("failed", "sum")
    )
    return out.reset_index()


def score_table(turns: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, judge, model, method, mixture, size, seed): the scores of one run.

    Columns: the keys, ``direction``, ``mean`` (mean item score), ``sem`` (standard error
    over items; NaN with fewer than two items), ``n_items`` (items with a score),
    ``n_judged`` and ``n_failed`` (turns).
    """
    items = item_table(turns)
    rows = []
    for key, g in items.groupby([*RUN_KEYS, "direction"], sort=True):
        scored = g["item_score"].dropna().to_numpy()
        rows.append({
            **dict(zip([*RUN_KEYS, "direction"], key, strict=True)),
            "mean": float(np.mean(scored)) if scored.size else np.nan,
            "sem": float(stats.sem(scored)) if scored.size > 1 else np.nan,
            "n_items": int(scored.size),
            "n_judged": int(g["judged"].sum()),
            "n_failed": int(g["failed"].sum()),
        })
    return pd.DataFrame(rows, columns=[*RUN_KEYS, "direction", "mean", "sem", "n_items",
                                       "n_judged", "n_failed"])


def per_turn_table(turns: pd.DataFrame) -> pd.DataFrame:
    """Per run and turn position: ``mean`` score, ``n_judged`` and ``n_failed``."""
    _check_columns(turns)
    df = turns.assign(failed=turns["score"].isna())
    out = df.groupby([*RUN_KEYS, "turn"], sort=True).agg(
        mean=("score", "mean"), n_judged=("score", "count"), n_failed=("failed", "sum")
    )
    return out.reset_index()


def curve_table(turns: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, judge, model, method, mixture, size), seeds pooled.

    ``mean`` is the mean over seeds of each seed's mean score; ``sem`` is the standard
    error over every (seed, item) item score; ``n_seeds``, ``n_items``, ``n_failed``.
    """
    items = item_table(turns)
    rows = []
    keys = [*CONFIG_KEYS, "size", "direction"]
    for key, g in items.groupby(keys, sort=True):
        scored = g.dropna(subset=["item_score"])
        seed_means = scored.groupby("seed")["item_score"].mean()
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "mean": float(seed_means.mean()) if len(seed_means) else np.nan,
            "sem": float(stats.sem(scored["item_score"])) if len(scored) > 1 else np.nan,
            "n_seeds": int(g["seed"].nunique()),
            "n_items": int(len(scored)),
            "n_failed": int(g["failed"].sum()),
        })
    return pd.DataFrame(rows, columns=[*keys, "mean", "sem", "n_seeds", "n_items", "n_failed"])


def quality_cube(items: pd.DataFrame, direction: str):
    """``[seeds, sizes, items]`` array of item quality (NaN where missing) and its axes."""
    seeds = np.sort(items["seed"].unique())
    sizes = np.sort(items["size"].unique())
    qids = sorted(items["question_id"].unique(), key=str)
    cube = np.full((len(seeds), len(sizes), len(qids)), np.nan)
    s_idx = {s: i for i, s in enumerate(seeds)}
    n_idx = {n: i for i, n in enumerate(sizes)}
    q_idx = {q: i for i, q in enumerate(qids)}
    q = quality(items["item_score"], direction)
    for seed, size, qid, value in zip(items["seed"], items["size"], items["question_id"], q,
                                      strict=True):
        cube[s_idx[seed], n_idx[size], q_idx[qid]] = value
    return cube, sizes


def _pairs(cube: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(size, mean quality over items) for every (seed, size) of a ``[seeds, sizes, items]``
    cube; a (seed, size) with no scored item is left out."""
    scored = (~np.isnan(cube)).sum(axis=2)  # [seeds, sizes]
    sums = np.nansum(cube, axis=2)
    means = np.divide(sums, scored, out=np.full(sums.shape, np.nan), where=scored > 0)
    x = np.broadcast_to(sizes[None, :], means.shape).ravel()
    y = means.ravel()
    keep = ~np.isnan(y)
    return x[keep], y[keep]


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(x) < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def spearman_with_ci(
    cube: np.ndarray,
    sizes: np.ndarray,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> SpearmanResult:
    """Spearman's rho over a ``[seeds, sizes, items]`` quality cube, with a bootstrap CI.

    The interval resamples seeds, then items, with replacement (module docstring); a
    resample whose rho is undefined (constant input) is left out of the percentiles.
    """
    x, y = _pairs(cube, sizes)
    rho, p = _spearman(x, y)
    lo = hi = np.nan
    if n_resamples > 0 and not np.isnan(rho):
        rng = np.random.default_rng(seed)
        n_seeds, _, n_items = cube.shape
        boots = np.empty(n_resamples)
        for b in range(n_resamples):
            s = rng.integers(n_seeds, size=n_seeds)
            i = rng.integers(n_items, size=n_items)
            boots[b] = _spearman(*_pairs(cube[s][:, :, i], sizes))[0]
        boots = boots[~np.isnan(boots)]
        if boots.size:
            alpha = (1 - confidence_level) / 2
            lo, hi = (float(v) for v in np.quantile(boots, [alpha, 1 - alpha]))
    return SpearmanResult(rho, p, lo, hi, int(len(x)), int(n_resamples))


def spearman_table(
    turns: pd.DataFrame,
    include_base: bool = True,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (suite, judge, model, method, mixture): rho of quality vs samples (see module).

    Columns: the keys, ``direction``, ``rho``, ``p_value``, ``ci_low``, ``ci_high``,
    ``n_points`` ((seed, size) means), ``n_sizes``, ``n_seeds``, ``n_items``, ``n_failed``.
    """
    items = item_table(turns)
    if not include_base:
        items = items[items["size"] > 0]
    rows = []
    for key, g in items.groupby([*CONFIG_KEYS, "direction"], sort=True):
        *config, direction = key
        cube, sizes = quality_cube(g, direction)
        res = spearman_with_ci(cube, sizes, n_resamples, confidence_level, seed)
        rows.append({
            **dict(zip(CONFIG_KEYS, config, strict=True)),
            "direction": direction,
            "rho": res.rho,
            "p_value": res.pvalue,
            "ci_low": res.ci_low,
            "ci_high": res.ci_high,
            "n_points": res.n_points,
            "n_sizes": int(len(sizes)),
            "n_seeds": int(g["seed"].nunique()),
            "n_items": int(g["question_id"].nunique()),
            "n_failed": int(g["failed"].sum()),
        })
    columns = [*CONFIG_KEYS, "direction", "rho", "p_value", "ci_low", "ci_high", "n_points",
               "n_sizes", "n_seeds", "n_items", "n_failed"]
    return pd.DataFrame(rows, columns=columns)


def _check_columns(turns: pd.DataFrame) -> None:
    missing = [c for c in TURN_COLUMNS if c not in turns.columns]
    if missing:
        raise ValueError(f"judgment table lacks columns {missing}")
