"""Running mean and variance of turn losses per assistant-turn position.

:class:`PositionStats` keeps, for each turn position ``k``, the count, mean and sum of
squared deviations (``M2``) of every finite value seen at that position. A whole batch is
folded in at once: its own mean and ``M2`` are computed per position (two passes over the
batch, vectorised with ``index_add``), then merged with the running figures by the
pairwise update of Chan, Golub & LeVeque (1979), "Updating formulae and a pairwise
algorithm for computing sample variances", Eq. 2.1:

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

Welford's one-value update is the special case ``n_b = 1``. The same merge combines the
states of several processes (:meth:`PositionStats.all_reduce`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

_F64 = torch.float64


class Moments(NamedTuple):
    """Per-position count, mean and ``M2`` (each ``[P]`` float64)."""

    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor


def chan_merge(a: Moments, b: Moments) -> Moments:
    """Merge two sets of per-position moments (Chan, Golub & LeVeque 1979, Eq. 2.1).

    Positions with no data on either side keep count 0, mean 0 and M2 0.
    """
    n = a.count + b.count
    frac_b = torch.where(n > 0, b.count / n.clamp(min=1), torch.zeros_like(n))
    delta = b.mean - a.mean
    mean = a.mean + delta * frac_b
    m2 = a.m2 + b.m2 + delta.square() * a.count * frac_b
    return Moments(n, mean, m2)


def batch_moments(values: torch.Tensor, positions: torch.Tensor, size: int) -> Moments:
    """Per-position moments of one batch, by a two-pass computation.

    Args:
        values: ``[N]`` float64, all finite.
        positions: ``[N]`` long in ``[0, size)``.
        size: number of positions ``P``.

    Returns:
        :class:`Moments` with ``[P]`` tensors (mean and M2 are 0 where count is 0).
    """
    count = torch.bincount(positions, minlength=size).to(_F64)  # [P]
    sums = torch.zeros(size, dtype=_F64).index_add_(0, positions, values)
    mean = torch.where(count > 0, sums / count.clamp(min=1), torch.zeros_like(sums))
    centred = values - mean[positions]  # [N]; second pass keeps M2 accurate for big offsets
    m2 = torch.zeros(size, dtype=_F64).index_add_(0, positions, centred.square())
    return Moments(count, mean, m2)


class PositionStats:
    """Running count, mean and variance of values per turn position.

    Args:
        max_positions: number of tracked positions ``P``; positions ``>= P`` are pooled
            into the last one (late turns are rare, so they share one estimate).

    All figures are float64 tensors on the CPU, whatever device the values come from.

    Undefined figures: the mean of a position with no finite value and the variance of a
    position with ``count <= ddof`` are NaN (as in numpy); they are never replaced by a
    made-up number. Callers select usable positions with :meth:`ready`.

    Notes:
        Non-finite values (NaN, +-inf) are not folded into the moments; they are counted
        per position in :attr:`nonfinite` so that logs show them.
    """

    def __init__(self, max_positions: int):
        if not isinstance(max_positions, int) or isinstance(max_positions, bool):
            raise ValueError(f"max_positions must be an int >= 1, got {max_positions!r}")
        if max_positions < 1:
            raise ValueError(f"max_positions must be an int >= 1, got {max_positions}")
        self.max_positions = max_positions
        zeros = torch.zeros(max_positions, dtype=_F64)
        self._moments = Moments(zeros, zeros.clone(), zeros.clone())
        self._nonfinite = torch.zeros(max_positions, dtype=torch.long)

    # ----------------------------------------------------------------- updating

    def update(self, values: torch.Tensor, positions: torch.Tensor) -> None:
        """Fold a batch of values in.

        Args:
            values: ``[N]`` values (any float dtype or device).
            positions: ``[N]`` non-negative integer positions; ``>= max_positions`` pooled.
        """
        values, positions = self._flatten(values, positions)
        finite = torch.isfinite(values)
        self._nonfinite += torch.bincount(positions[~finite], minlength=self.max_positions)
        batch = batch_moments(values[finite], positions[finite], self.max_positions)
        self._moments = chan_merge(self._moments, batch)

    def merge(self, other: PositionStats) -> None:
        """Fold in the data of ``other`` (same ``max_positions``), in place."""
        if other.max_positions != self.max_positions:
            raise ValueError(
                f"cannot merge PositionStats with max_positions {other.max_positions} "
                f"into one with max_positions {self.max_positions}"
            )
        self._moments = chan_merge(self._moments, other._moments)
        self._nonfinite = self._nonfinite + other._nonfinite

    def all_reduce(self, group: Any = None) -> None:
        """Replace this state by the union of the states of all processes in ``group``.

        Gathers count, mean, M2 and non-finite counts from every process and merges them
        in rank order, so every process ends with identical figures. A no-op when
        ``torch.distributed`` is not initialised.

        Notes:
            Data already shared would be counted again: call this on statistics holding
            only new data (e.g. one step's batch) and merge the result into the running
            statistics.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = _comm_device(group)
        packed = torch.stack([*self._moments, self._nonfinite.to(_F64)]).to(device)  # [4, P]
        gathered = [torch.empty_like(packed) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, packed, group=group)
        merged = PositionStats(self.max_positions)
        for rows in gathered:
            rows = rows.cpu()
            merged._moments = chan_merge(merged._moments, Moments(rows[0], rows[1], rows[2]))
            merged._nonfinite += rows[3].round().long()
        self._moments, self._nonfinite = merged._moments, merged._nonfinite

    def _flatten(self, values: torch.Tensor, positions: torch.Tensor):
        values = torch.as_tensor(values).detach().reshape(-1).to("cpu", _F64)
        positions = torch.as_tensor(positions).detach().reshape(-1).to("cpu", torch.long)
        if values.shape != positions.shape:
            raise ValueError(
                f"values and positions must have the same number of entries, got "
                f"{values.numel()} and {positions.numel()}"
            )
        if positions.numel() and int(positions.min()) < 0:
            raise ValueError(f"positions must be >= 0, got {int(positions.min())}")
        return values, positions.clamp(max=self.max_positions - 1)

    # ----------------------------------------------------------------- reading

    @property
    def count(self) -> torch.Tensor:
        """``[P]`` long: finite values seen per position."""
        return self._moments.count.round().long()

    @property
    def nonfinite(self) -> torch.Tensor:
        """``[P]`` long: non-finite values ignored per position."""
        return self._nonfinite.clone()

    @property
    def total_nonfinite(self) -> int:
        return int(self._nonfinite.sum())

    def ready(self, min_count: int = 2) -> torch.Tensor:
        """``[P]`` bool: positions with at least ``max(min_count, 2)`` finite values,
        i.e. with a defined sample variance."""
        return self._moments.count >= max(min_count, 2)

    def mean(self) -> torch.Tensor:
        """``[P]`` float64 running mean; NaN where a position has no finite value."""
        count, mean, _ = self._moments
        return torch.where(count > 0, mean, torch.full_like(mean, math.nan))

    def var(self, ddof: int = 1) -> torch.Tensor:
        """``[P]`` float64 variance ``M2 / (count - ddof)``; NaN where ``count <= ddof``."""
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
        count, _, m2 = self._moments
        denom = count - ddof
        return torch.where(denom > 0, m2 / denom.clamp(min=1), torch.full_like(m2, math.nan))

    def std(self, ddof: int = 1) -> torch.Tensor:
        """``[P]`` float64 standard deviation; NaN where ``count <= ddof``."""
        return self.var(ddof).sqrt()

    def snapshot(self, ddof: int = 1) -> list[dict[str, Any]]:
        """Per-position figures for logs: ``position, count, nonfinite, mean, std``.

        ``mean`` / ``std`` are None (JSON null) where undefined.
        """
        mean, std = self.mean().tolist(), self.std(ddof).tolist()
        count, nonfinite = self.count.tolist(), self._nonfinite.tolist()
        return [
            {
                "position": k,
                "count": count[k],
                "nonfinite": nonfinite[k],
                "mean": _finite_or_none(mean[k]),
                "std": _finite_or_none(std[k]),
            }
            for k in range(self.max_positions)
        ]

    # ----------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (Python floats round-trip float64 exactly)."""
        count, mean, m2 = self._moments
        return {
            "max_positions": self.max_positions,
            "count": count.tolist(),
            "mean": mean.tolist(),
            "m2": m2.tolist(),
            "nonfinite": self._nonfinite.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same ``max_positions`` required)."""
        if state.get("max_positions") != self.max_positions:
            raise ValueError(
                f"state has max_positions {state.get('max_positions')!r}, "
                f"these statistics have {self.max_positions}"
            )
        rows = [torch.tensor(state[key], dtype=_F64) for key in ("count", "mean", "m2")]
        nonfinite = torch.tensor(state["nonfinite"], dtype=torch.long)
        if any(r.shape != (self.max_positions,) for r in [*rows, nonfinite]):
            raise ValueError(f"state rows must each have {self.max_positions} entries")
        self._moments = Moments(*rows)
        self._nonfinite = nonfinite

    def __repr__(self) -> str:
        return f"PositionStats(max_positions={self.max_positions}, count={self.count.tolist()})"


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _comm_device(group: Any) -> torch.device:
    # NCCL only moves CUDA tensors; gloo and others take CPU tensors.
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
