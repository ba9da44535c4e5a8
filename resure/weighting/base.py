"""The interface every weighting method implements.

A weighting method sees, for each training step, the detached mean loss of every
(sample, assistant turn) pair and returns a non-negative weight for each pair. The
trainer multiplies each turn's token losses by its weight (see
:func:`resure.losses.weighted_loss`). Methods may keep running state (statistics,
quantiles); that state is saved in checkpoints through ``state_dict`` /
``load_state_dict`` so that a resumed run reproduces the weights of an uninterrupted one.

Shapes (B = samples in the batch, K = max assistant turns in the batch):
    losses    [B, K] float  mean token loss of turn k of sample b (0 where absent)
    present   [B, K] bool   True where sample b has a k-th assistant turn in the batch
    positions [B, K] long   turn position used for statistics (k, capped by the method)
    weights   [B, K] float  returned; must be 0 where ``present`` is False
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class TurnBatch:
    """What a weighting method sees at one optimisation step.

    Attributes:
        losses: ``[B, K]`` detached mean loss per (sample, turn); 0 where absent.
        present: ``[B, K]`` bool mask of turns present in this batch.
        tokens: ``[B, K]`` number of supervised tokens per (sample, turn).
        sample_ids: ``B`` dataset ids of the samples, for methods keyed by sample.
        step: global optimisation step (0-based).
    """

    losses: torch.Tensor
    present: torch.Tensor
    tokens: torch.Tensor
    sample_ids: tuple[str, ...]
    step: int

    @property
    def positions(self) -> torch.Tensor:
        """``[B, K]`` turn position of every entry (the column index)."""
        b, k = self.losses.shape
        return torch.arange(k, device=self.losses.device).expand(b, k)


class WeightingMethod(ABC):
    """Base class of weighting methods; register subclasses with ``@register_weighting``.

    Subclasses take their options as keyword arguments in ``__init__`` and must refuse
    unknown or clashing options there with a ``ValueError`` that names the option.
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def weights(self, batch: TurnBatch) -> torch.Tensor:
        """Return ``[B, K]`` non-negative weights; 0 where ``batch.present`` is False.

        Called once per optimisation step with detached losses; may update state.
        """

    def state_dict(self) -> dict[str, Any]:
        """Running state to checkpoint (plain Python / tensors). Stateless: ``{}``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} is stateless but got state {sorted(state)}")

    def diagnostics(self) -> dict[str, Any]:
        """Extra per-step figures for the weighting log (e.g. per-position mean/std)."""
        return {}

    def options(self) -> dict[str, Any]:
        """The resolved options, written to run manifests."""
        return {}
