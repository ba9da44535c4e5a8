"""Analysis numerics checked against plain numpy/scipy computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from resure.sweep import analysis


def make_turns(seed: int = 0, direction: str = "lower", slope: float = -0.05,
               n_items: int = 6, seeds=(0, 1), sizes=(0, 4, 8, 16)) -> pd.DataFrame:
    """Synthetic per-turn judgments: two turns per item, score = base + slope*log2(size)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        for size in sizes:
            for q in range(n_items):
                for turn in (1, 2):
                    score = 3.0 + slope * np.log2(size + 1) + rng.normal(0, 0.05) + 0.1 * q
                    rows.append({"suite": "chat", "judge": "nll", "model": "m",
                                 "method": "uniform", "mixture": "clean", "size": size,
                                 "seed": s, "direction": direction, "question_id": f"q{q}",
                                 "turn": turn, "score": score, "failure": None})
    return pd.DataFrame(rows, columns=analysis.TURN_COLUMNS)


def test_score_table_matches_plain_means_and_sem():
    turns = make_turns()
    # One failed turn: left out of its item's mean and counted.
    idx = turns.index[(turns["size"] == 8) & (turns["seed"] == 1) & (turns["question_id"] == "q2")
                      & (turns["turn"] == 2)][0]
    turns.loc[idx, ["score", "failure"]] = [np.nan, "no_rating"]
    table = analysis.score_table(turns)
    assert len(table) == 2 * 4
    row = table[(table["size"] == 8) & (table["seed"] == 1)].iloc[0]
    sub = turns[(turns["size"] == 8) & (turns["seed"] == 1)]
    item_means = sub.groupby("question_id")["score"].mean()  # pandas skips NaN
    assert row["mean"] == pytest.approx(item_means.mean())
    assert row["sem"] == pytest.approx(np.std(item_means, ddof=1) / np.sqrt(len(item_means)))
    assert (row["n_items"], row["n_judged"], row["n_failed"]) == (6, 11, 1)


def test_per_turn_and_curve_tables():
    turns = make_turns()
    per_turn = analysis.per_turn_table(turns)
    r = per_turn[(per_turn["size"] == 4) & (per_turn["seed"] == 0) & (per_turn["turn"] == 2)]
    sub = turns[(turns["size"] == 4) & (turns["seed"] == 0) & (turns["turn"] == 2)]
    assert r["mean"].item() == pytest.approx(sub["score"].mean())
    curves = analysis.curve_table(turns)
    c = curves[curves["size"] == 16].iloc[0]
    items = turns[turns["size"] == 16].groupby(["seed", "question_id"])["score"].mean()
    assert c["mean"] == pytest.approx(items.groupby("seed").mean().mean())
    assert c["sem"] == pytest.approx(stats.sem(items.to_numpy()))
    assert (c["n_seeds"], c["n_items"]) == (2, 12)


def test_spearman_is_scipys_on_quality_and_sign_follows_direction():
    turns = make_turns(direction="lower", slope=-0.05)
    table = analysis.spearman_table(turns, include_base=True, n_resamples=0)
    items = turns.groupby(["seed", "size", "question_id"])["score"].mean()
    means = items.groupby(["seed", "size"]).mean().reset_index()
    expected = stats.spearmanr(means["size"], -means["score"])
    row = table.iloc[0]
    assert row["rho"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue)
    assert row["rho"] > 0  # NLL falls with data: quality improves
    assert row["n_points"] == 2 * 4
    higher = analysis.spearman_table(turns.assign(direction="higher"), n_resamples=0)
    assert higher.iloc[0]["rho"] == pytest.approx(-row["rho"])


def test_spearman_without_base_point():
    turns = make_turns()
    table = analysis.spearman_table(turns, include_base=False, n_resamples=0)
    means = turns[turns["size"] > 0].groupby(["seed", "size"])["score"].mean().reset_index()
    assert table.iloc[0]["rho"] == pytest.approx(
        stats.spearmanr(means["size"], -means["score"]).statistic)
    assert table.iloc[0]["n_sizes"] == 3


def test_bootstrap_interval_matches_a_plain_resampling_loop():
    turns = make_turns(seed=3, slope=-0.02)
    table = analysis.spearman_table(turns, n_resamples=200, confidence_level=0.9, seed=7)
    # Plain reimplementation: resample seeds then items (shared across sizes).
    items = turns.groupby(["seed", "size", "question_id"])["score"].mean()
    cube = np.stack([
        np.stack([items.loc[(s, n)].sort_index().to_numpy() for n in (0, 4, 8, 16)])
        for s in (0, 1)
    ])  # [seeds, sizes, items]
    rng = np.random.default_rng(7)
    boots = []
    for _ in range(200):
        si = rng.integers(2, size=2)
        ii = rng.integers(6, size=6)
        means = -cube[si][:, :, ii].mean(axis=2)  # [seeds, sizes]
        x = np.tile([0, 4, 8, 16], 2)
        boots.append(stats.spearmanr(x, means.ravel()).statistic)
    lo, hi = np.quantile(boots, [0.05, 0.95])
    row = table.iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert row["ci_low"] <= row["rho"] <= row["ci_high"]


def test_constant_scores_give_undefined_rho_not_a_number():
    turns = make_turns().assign(score=1.0)
    row = analysis.spearman_table(turns, n_resamples=10).iloc[0]
    assert np.isnan(row["rho"]) and np.isnan(row["ci_low"])


def test_quality_orientation_and_errors():
    assert analysis.quality([1.0, 2.0], "lower").tolist() == [-1.0, -2.0]
    assert analysis.quality([1.0], "higher").tolist() == [1.0]
    with pytest.raises(ValueError, match="direction must be 'higher' or 'lower'"):
        analysis.quality([1.0], "up")
    with pytest.raises(ValueError, match=r"lacks columns \['failure'\]"):
        analysis.score_table(make_turns().drop(columns="failure"))
