"""ReSURE: down-weight assistant turns whose loss is abnormal for their turn position.

Du et al. (EMNLP 2025), "ReSURE", describe in their abstract an adaptive method that keeps
per-turn loss statistics with Welford's online algorithm and re-weights losses on the fly,
without filtering the data beforehand. Only the abstract is public, so the equations below
(z-score, soft/hard weight, sample level, cascade) are this project's formulation of that
description, not a reproduction of the authors' code.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from resure.stats import PositionStats
from resure.weighting.base import TurnBatch, WeightingMethod
from resure.weighting.methods._options import (
    check_bool,
    check_choice,
    check_int,
    check_real,
    refuse_unknown,
)
from resure.weighting.registry import register_weighting

logger = logging.getLogger(__name__)

_F64 = torch.float64
_RESURE_OPTIONS = (
    "threshold",
    "mode",
    "temperature",
    "warmup",
    "level",
    "cascade",
    "update",
    "max_positions",
    "min_weight",
    "one_sided",
    "eps",
)


@register_weighting("resure")
class ReSURE(WeightingMethod):
    """Per-position z-scores of turn losses turned into weights.

    For turn ``k`` of sample ``b`` with mean token loss ``l_bk``, position
    ``p = min(k, max_positions - 1)`` and running mean ``mu_p`` and sample standard
    deviation ``sigma_p`` (ddof=1) of the losses seen at ``p``::

        z_bk = (l_bk - mu_p) / (sigma_p + eps)
        s_bk = z_bk if one_sided else |z_bk|
        hard: w_bk = 0                                   if s_bk > threshold else 1
        soft: w_bk = exp(-(s_bk - threshold) / temperature) if s_bk > threshold else 1

    The soft weight is continuous at the threshold and halves every
    ``temperature * ln 2`` standard deviations beyond it.

    ``level="sample"`` gives every turn of sample ``b`` the weight of ``max_k s_bk`` (its most
    abnormal judged turn): one bad turn makes the whole dialogue suspect.
    ``cascade=True`` (turn level only) multiplies each turn's weight by the weights of the
    earlier present turns of the same sample, ``w'_bk = prod_{j <= k} w_bj``, because a
    turn that follows an unreliable turn is conditioned on unreliable context.
    Finally present turns get ``max(w, min_weight)`` and absent turns 0.

    A turn is judged only when its position has at least ``warmup`` finite losses in the
    statistics; otherwise its weight is 1. Every present turn's loss enters the statistics
    (down-weighted ones included), ``before`` or ``after`` its z-score is computed.

    Args:
        threshold: z-score above which a turn is abnormal. Default 2.0: for roughly normal
            clean losses about 2% of clean turns exceed it, while grossly wrong targets,
            whose losses sit far in the tail, are caught.
        mode: ``"soft"`` (default; re-weighting rather than filtering, as the method is
            described) or ``"hard"`` (weight 0 above the threshold).
        temperature: decay of the soft weight, in standard deviations. Soft only;
            default 1.0.
        warmup: losses a position needs before its turns are judged (>= 2, the minimum for
            a standard deviation). Default 20, so early noisy estimates do not drop turns.
        level: ``"turn"`` (default) or ``"sample"``.
        cascade: propagate weights to later turns of the same sample. Default False.
        update: ``"after"`` (default): z-scores use the statistics of earlier steps only,
            so an abnormal loss cannot widen the spread it is judged against; ``"before"``
            folds the current batch in first.
        max_positions: tracked positions; later turns share the last one. Default 8.
        min_weight: floor of a present turn's weight, in [0, 1]. Default 0.0.
        one_sided: only losses above the mean are abnormal (default True); with False an
            unusually low loss (e.g. a trivially copied target) is down-weighted too.
        eps: added to the standard deviation. Default 1e-6.

    Notes:
        In a distributed run each step's batch statistics are merged across processes
        (:meth:`PositionStats.all_reduce`) before entering the running statistics, so every
        process holds the same statistics and the same state is saved by any rank.
        Non-finite losses are left out of the statistics (counted in ``diagnostics``) and
        are not hidden: an infinite loss gets the minimum weight once its position is
        judged, a NaN loss keeps weight 1 so that it still surfaces in the training loss.
    """

    def __init__(
        self,
        *,
        threshold: float = 2.0,
        mode: str = "soft",
        temperature: float | None = None,
        warmup: int = 20,
        level: str = "turn",
        cascade: bool = False,
        update: str = "after",
        max_positions: int = 8,
        min_weight: float = 0.0,
        one_sided: bool = True,
        eps: float = 1e-6,
        **unknown,
    ):
        refuse_unknown("resure", unknown, _RESURE_OPTIONS)
        self.threshold = check_real("threshold", threshold, 0.0, low_open=True)
        self.mode = check_choice("mode", mode, ("soft", "hard"))
        self.temperature = _resolve_temperature(self.mode, temperature)
        self.warmup = check_int("warmup", warmup, 2)
        self.level = check_choice("level", level, ("turn", "sample"))
        self.cascade = check_bool("cascade", cascade)
        if self.cascade and self.level == "sample":
            raise ValueError(
                "cascade=True applies only to level='turn' (at sample level every turn "
                "already shares one weight); set level='turn' or cascade=False"
            )
        self.update = check_choice("update", update, ("after", "before"))
        self.max_positions = check_int("max_positions", max_positions, 1)
        self.min_weight = check_real("min_weight", min_weight, 0.0, 1.0)
        self.one_sided = check_bool("one_sided", one_sided)
        self.eps = check_real("eps", eps, 0.0, low_open=True)
        self.stats = PositionStats(self.max_positions)
        self._last: dict[str, Any] = {}

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _RESURE_OPTIONS}

    # ----------------------------------------------------------------- weights

    def weights(self, batch: TurnBatch) -> torch.Tensor:
        """``[B, K]`` float32 weights on the device of ``batch.losses``."""
        losses = batch.losses.detach().to("cpu", _F64)  # [B, K]
        present = batch.present.detach().to("cpu", torch.bool)  # [B, K]
        positions = batch.positions.cpu().clamp(max=self.max_positions - 1)  # [B, K]
        fresh = PositionStats(self.max_positions)
        fresh.update(losses[present], positions[present])
        fresh.all_reduce()
        if fresh.total_nonfinite:
            logger.warning(
                "step %d: %d non-finite turn losses left out of the statistics",
                batch.step,
                fresh.total_nonfinite,
            )
        # The order decides whether the current losses shape the yardstick they are
        # measured with; see the `update` option.
        if self.update == "before":
            self.stats.merge(fresh)
        scores, judged = self._scores(losses, positions, present)
        if self.update == "after":
            self.stats.merge(fresh)
        weights = self._combine(scores, judged, present)
        self._remember(weights, judged, present)
        return weights.to(device=batch.losses.device, dtype=torch.float32)

    def _scores(self, losses, positions, present):
        """``s_bk`` (``[B, K]`` float64) and the ``[B, K]`` bool mask of judged turns."""
        mean = torch.nan_to_num(self.stats.mean())[positions]  # [B, K]
        std = torch.nan_to_num(self.stats.std())[positions]  # [B, K]
        z = (losses - mean) / (std + self.eps)
        judged = present & self.stats.ready(self.warmup)[positions]
        return (z if self.one_sided else z.abs()), judged

    def _combine(self, scores, judged, present) -> torch.Tensor:
        """Scores of judged turns to ``[B, K]`` float64 weights (level, cascade, floor)."""
        if self.level == "sample":
            masked = torch.where(judged, scores, torch.full_like(scores, -math.inf))
            per_sample = self._weight_of(masked.amax(dim=1, keepdim=True))  # [B, 1]
            weights = per_sample.expand_as(scores)
        else:
            weights = torch.where(judged, self._weight_of(scores), torch.ones_like(scores))
        if self.cascade:
            weights = torch.where(present, weights, torch.ones_like(weights)).cumprod(dim=1)
        weights = weights.clamp(min=self.min_weight)
        return torch.where(present, weights, torch.zeros_like(weights))

    def _weight_of(self, scores: torch.Tensor) -> torch.Tensor:
        """Hard or soft weight of each score (1 at or below the threshold, and for NaN)."""
        above = scores > self.threshold
        if self.mode == "hard":
            inside = torch.zeros_like(scores)
        else:
            inside = torch.exp(-(scores - self.threshold) / self.temperature)
        return torch.where(above, inside, torch.ones_like(scores))

    # ----------------------------------------------------------------- state and logs

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"stats"}:
            raise ValueError(f"resure state must have the key 'stats'; got {sorted(state)}")
        self.stats.load_state_dict(state["stats"])

    def _remember(self, weights, judged, present) -> None:
        n = int(present.sum())
        kept = weights[present]
        self._last = {
            "turns": n,
            "judged": int(judged.sum()),
            "down_weighted": int((kept < 1).sum()),
            "mean_weight": float(kept.mean()) if n else None,
        }

    def diagnostics(self) -> dict[str, Any]:
        """Last step's figures and per-position statistics with the loss band outside
        which a turn counts as abnormal: above ``mean + threshold * (std + eps)`` (and,
        two-sided, below ``mean - threshold * (std + eps)``); None until ready."""
        positions = self.stats.snapshot()
        ready = self.stats.ready(self.warmup).tolist()
        for row, is_ready in zip(positions, ready, strict=True):
            margin = self.threshold * (row["std"] + self.eps) if is_ready else None
            row["loss_above"] = row["mean"] + margin if is_ready else None
            if not self.one_sided:
                row["loss_below"] = row["mean"] - margin if is_ready else None
        return {"threshold": self.threshold, **self._last, "positions": positions}


def _resolve_temperature(mode: str, temperature: float | None) -> float | None:
    if mode == "hard":
        if temperature is not None:
            raise ValueError(
                "temperature applies only to mode='soft'; drop temperature or set mode='soft'"
            )
        return None
    if temperature is None:
        return 1.0
    return check_real("temperature", temperature, 0.0, low_open=True)
