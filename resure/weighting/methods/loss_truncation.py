"""Loss truncation (Kang & Hashimoto, ACL 2020, "Improved Natural Language Generation via
Loss Truncation"): drop the samples whose loss lies in the top ``drop_frac`` of recent
losses, on the grounds that those are the likeliest to be noisy or invalid references."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

import torch
import torch.distributed as dist

from resure.weighting.base import TurnBatch, WeightingMethod
from resure.weighting.methods._options import check_int, check_real, refuse_unknown
from resure.weighting.registry import register_weighting

logger = logging.getLogger(__name__)

_F64 = torch.float64


@register_weighting("loss_truncation", aliases=("loss-truncation",))
class LossTruncation(WeightingMethod):
    """Sample-level hard truncation at a running quantile of sample losses.

    The loss of sample ``b`` is the token-weighted mean of its present turns' losses,
    ``L_b = sum_k n_bk l_bk / sum_k n_bk`` (``n_bk`` supervised tokens), i.e. its mean
    per-token loss. With ``q`` the ``(1 - drop_frac)`` quantile of the last ``window``
    finite sample losses (the current batch included)::

        w_bk = 0 if L_b > q else 1      (for every present turn k of b; 0 if absent)

    No sample is dropped until ``warmup`` sample losses have been seen.

    Args:
        drop_frac: fraction of samples to drop, in (0, 1). Default 0.1: it should sit near
            the expected share of unreliable samples; a tenth costs little clean data
            when most samples are clean. The authors tune it per data set.
        warmup: sample losses to see before any sample is dropped (>= 1). Default 100, so
            the quantile rests on enough losses.
        window: number of recent sample losses kept for the quantile (>= 1). Default 1000.

    Notes:
        The quantile is the exact one (``torch.quantile``, linear interpolation) of the
        buffer of the last ``window`` losses, recomputed every step; the authors estimate
        it online from recently seen losses as well, and the window trades reaction to the
        falling training loss against the noise of the estimate. In a distributed run each
        step's sample losses are gathered from every process in rank order, so every
        process keeps the same buffer. Non-finite sample losses are left out of the buffer
        and counted; an infinite loss is dropped (it exceeds any quantile), a NaN loss is
        kept so that it still surfaces in the training loss.
    """

    def __init__(self, *, drop_frac: float = 0.1, warmup: int = 100, window: int = 1000, **unknown):
        refuse_unknown("loss_truncation", unknown, ("drop_frac", "warmup", "window"))
        self.drop_frac = check_real("drop_frac", drop_frac, 0.0, 1.0, low_open=True, high_open=True)
        self.warmup = check_int("warmup", warmup, 1)
        self.window = check_int("window", window, 1)
        self._buffer: deque[float] = deque(maxlen=self.window)
        self._seen = 0
        self._nonfinite = 0
        self._last: dict[str, Any] = {}

    def options(self) -> dict[str, Any]:
        return {"drop_frac": self.drop_frac, "warmup": self.warmup, "window": self.window}

    def weights(self, batch: TurnBatch) -> torch.Tensor:
        """``[B, K]`` float32 weights (0 or 1) on the device of ``batch.losses``."""
        present = batch.present.detach().to("cpu", torch.bool)  # [B, K]
        sample_loss, has_turns = _sample_losses(batch, present)  # [B], [B]
        self._observe(sample_loss[has_turns], batch.step)
        threshold = self.threshold()
        if threshold is None:
            drop = torch.zeros_like(has_turns)
        else:
            drop = has_turns & (sample_loss > threshold)  # [B]
        weights = (present & ~drop[:, None]).to(torch.float32)
        self._last = {
            "samples": int(has_turns.sum()),
            "dropped": int(drop.sum()),
            "threshold": threshold,
        }
        return weights.to(batch.losses.device)

    def _observe(self, losses: torch.Tensor, step: int) -> None:
        """Add this step's sample losses (of every process) to the buffer."""
        values = _gather(losses.tolist())
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < len(values):
            logger.warning(
                "step %d: %d non-finite sample losses left out of the quantile buffer",
                step,
                len(values) - len(finite),
            )
        self._nonfinite += len(values) - len(finite)
        self._seen += len(finite)
        self._buffer.extend(finite)

    def threshold(self) -> float | None:
        """The loss above which samples are dropped now; None during warm-up."""
        if self._seen < self.warmup or not self._buffer:
            return None
        buffer = torch.tensor(list(self._buffer), dtype=_F64)
        return float(torch.quantile(buffer, 1.0 - self.drop_frac))

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": list(self._buffer), "seen": self._seen, "nonfinite": self._nonfinite}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"buffer", "seen", "nonfinite"}:
            raise ValueError(
                f"loss_truncation state must have keys buffer, seen, nonfinite; got {sorted(state)}"
            )
        if len(state["buffer"]) > self.window:
            raise ValueError(
                f"loss_truncation state holds {len(state['buffer'])} losses, more than "
                f"window={self.window}; resume with the window it was saved with"
            )
        self._buffer = deque((float(v) for v in state["buffer"]), maxlen=self.window)
        self._seen = int(state["seen"])
        self._nonfinite = int(state["nonfinite"])

    def diagnostics(self) -> dict[str, Any]:
        return {
            "drop_frac": self.drop_frac,
            **self._last,
            "buffer_size": len(self._buffer),
            "seen": self._seen,
            "nonfinite": self._nonfinite,
        }


def _sample_losses(batch: TurnBatch, present: torch.Tensor):
    """Token-weighted mean loss per sample (``[B]`` float64) and ``[B]`` bool "has turns"."""
    losses = batch.losses.detach().to("cpu", _F64)  # [B, K]
    tokens = torch.where(present, batch.tokens.detach().to("cpu", _F64), 0.0)  # [B, K]
    has_turns = present.any(dim=1)  # [B]
    total = tokens.sum(dim=1)  # [B]
    empty = has_turns & (total <= 0)
    if bool(empty.any()):
        sid = batch.sample_ids[int(empty.nonzero()[0])]
        raise ValueError(f"sample {sid!r} has present turns but no supervised tokens")
    weighted = torch.where(present, losses * tokens, 0.0).sum(dim=1)
    return weighted / total.clamp(min=1), has_turns


def _gather(values: list[float]) -> list[float]:
    """Concatenate ``values`` of every process in rank order (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    parts: list[list[float] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values)
    return [v for part in parts for v in part]
