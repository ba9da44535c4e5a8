"""PNG figures of a sweep (matplotlib, Agg backend, written atomically).

- :func:`plot_curves`: score against number of training samples, one panel per mixture,
  one line per method (and model), error bars from :func:`~.analysis.curve_table`.
- :func:`plot_weight_trajectories`: mean weight given to the assistant turns of each turn
  position at each logging step, one row per method, one column per mixture, one line per
  position (seeds averaged).
- :func:`plot_position_stats`: the per-position loss statistics the method keeps
  (ReSURE) and its threshold, when the log holds them.
- :func:`plot_downweighted`: share of corrupted and of clean turns down-weighted (weight
  below 1) over the whole pass, per method and mixture.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from resure.io import atomic_path

logger = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def plot_curves(curves: pd.DataFrame, out_dir: Path, mixtures: Sequence[str]) -> list[Path]:
    """One PNG per (suite, judge): score vs samples; returns the written paths."""
    plt = _pyplot()
    paths = []
    for (suite, judge), g in curves.groupby(["suite", "judge"], sort=True):
        direction = g["direction"].iloc[0]
        present = [m for m in mixtures if m in set(g["mixture"])]
        fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.6),
                                 sharey=True, squeeze=False, layout="constrained")
        for ax, mixture in zip(axes[0], present, strict=True):
            _curve_panel(ax, g[g["mixture"] == mixture], mixture)
        axes[0][0].set_ylabel(f"{judge} ({direction} is better)")
        axes[0][-1].legend(fontsize=8, loc="best")
        fig.suptitle(f"{suite}: {judge} vs number of training samples")
        path = out_dir / f"curve_{suite}_{judge}.png"
        _save(fig, path)
        paths.append(path)
    return paths


def _curve_panel(ax, g: pd.DataFrame, mixture: str) -> None:
    multi_model = g["model"].nunique() > 1
    lines = list(g.groupby(["model", "method"], sort=True))
    for k, ((model, method), line) in enumerate(lines):
        line = line.sort_values("size")
        label = f"{model}/{method}" if multi_model else method
        yerr = line["sem"].fillna(0).to_numpy()
        # Lines are shifted apart a little (a few percent, on the log-like axis) so that
        # overlapping methods and their error bars stay visible.
        dodge = 1 + 0.04 * (k - (len(lines) - 1) / 2)
        ax.errorbar(line["size"] * dodge, line["mean"], yerr=yerr, marker="o", ms=3,
                    capsize=3, label=label)
    sizes = sorted(g["size"].unique())
    positive = [s for s in sizes if s > 0]
    if positive:
        # symlog keeps the base model (0 samples) on a log-like axis of sizes.
        ax.set_xscale("symlog", linthresh=min(positive))
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes], fontsize=8)
    ax.set_title(mixture)
    ax.set_xlabel("training samples (0 = base model)")
    ax.grid(alpha=0.3)


def plot_weight_trajectories(weights: pd.DataFrame, out_dir: Path,
                             mixtures: Sequence[str], max_positions: int = 4) -> Path | None:
    """Mean weight per turn position over training.

    ``weights`` has columns method, mixture, samples_seen, position, seen, mean_weight
    (one row per logging step and position). Positions past ``max_positions`` are pooled
    into the last line, weighted by the number of turns seen.
    """
    if weights.empty:
        return None
    plt = _pyplot()
    w = weights.assign(position=weights["position"].clip(upper=max_positions - 1))
    w = w.assign(weight_sum=w["mean_weight"] * w["seen"])
    methods = sorted(w["method"].unique())
    present = [m for m in mixtures if m in set(w["mixture"])]
    fig, axes = plt.subplots(len(methods), len(present),
                             figsize=(4.2 * len(present), 2.6 * len(methods)),
                             squeeze=False, layout="constrained", sharex=True, sharey=True)
    for i, method in enumerate(methods):
        for j, mixture in enumerate(present):
            ax = axes[i][j]
            g = w[(w["method"] == method) & (w["mixture"] == mixture)]
            sums = g.groupby(["position", "samples_seen"])[["weight_sum", "seen"]].sum()
            for pos, line in sums.groupby(level="position"):
                line = line.droplevel("position")
                last = " and later" if pos == max_positions - 1 else ""
                ax.plot(line.index, line["weight_sum"] / line["seen"], marker=".",
                        label=f"turn {int(pos) + 1}{last}")
            ax.set_title(f"{method} / {mixture}", fontsize=9)
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("mean weight")
            if i == len(methods) - 1:
                ax.set_xlabel("samples seen")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle("Mean weight per assistant-turn position over training (seeds averaged)")
    path = out_dir / "weights_over_training.png"
    _save(fig, path)
    return path


def plot_position_stats(positions: pd.DataFrame, out_dir: Path,
                        mixtures: Sequence[str]) -> Path | None:
    """Per turn position: the method's running loss mean and its abnormality threshold."""
    if positions.empty:
        return None
    plt = _pyplot()
    methods = sorted(positions["method"].unique())
    present = [m for m in mixtures if m in set(positions["mixture"])]
    fig, axes = plt.subplots(len(methods), len(present),
                             figsize=(4.2 * len(present), 3.2 * len(methods)),
                             squeeze=False, layout="constrained", sharex=True)
    for i, method in enumerate(methods):
        for j, mixture in enumerate(present):
            ax = axes[i][j]
            g = positions[(positions["method"] == method) & (positions["mixture"] == mixture)]
            for pos, line in g.groupby("position", sort=True):
                mean = line.groupby("samples_seen")[["mean", "loss_above"]].mean()
                (handle,) = ax.plot(mean.index, mean["mean"], label=f"turn {int(pos) + 1}")
                ax.plot(mean.index, mean["loss_above"], ls="--", color=handle.get_color())
            ax.set_title(f"{method} / {mixture}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("turn loss: mean (—), threshold (--)")
            if i == len(methods) - 1:
                ax.set_xlabel("samples seen")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Per-position loss statistics of the weighting method (seeds averaged)")
    path = out_dir / "position_stats.png"
    _save(fig, path)
    return path


def plot_downweighted(shares: pd.DataFrame, out_dir: Path, mixtures: Sequence[str]) -> Path | None:
    """Bars: share of corrupted / clean turns down-weighted, per method and mixture."""
    if shares.empty:
        return None
    plt = _pyplot()
    present = [m for m in mixtures if m in set(shares["mixture"])]
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, mixture in zip(axes[0], present, strict=True):
        g = shares[shares["mixture"] == mixture].groupby("method", sort=True).mean(
            numeric_only=True)
        x = np.arange(len(g))
        ax.bar(x - 0.2, g["corrupted_downweighted"].fillna(0), 0.4, label="corrupted turns")
        ax.bar(x + 0.2, g["clean_downweighted"].fillna(0), 0.4, label="clean turns")
        ax.set_xticks(x)
        ax.set_xticklabels(g.index, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(mixture)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("share down-weighted (weight < 1)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Which turns each method down-weighted (whole pass, seeds averaged)")
    path = out_dir / "downweighted.png"
    _save(fig, path)
    return path
