"""The unweighted baseline."""

from __future__ import annotations

import torch

from resure.weighting.base import TurnBatch, WeightingMethod
from resure.weighting.methods._options import refuse_unknown
from resure.weighting.registry import register_weighting


@register_weighting("uniform", aliases=("none",))
class Uniform(WeightingMethod):
    """Every present assistant turn counts fully (plain fine-tuning).

    Equation: ``w_bk = 1`` if turn ``k`` of sample ``b`` is present, else ``0``.
    Stateless, no options.
    """

    def __init__(self, **unknown):
        refuse_unknown("uniform", unknown, ())

    def weights(self, batch: TurnBatch) -> torch.Tensor:
        """``[B, K]`` float32 on the device of ``batch.losses``."""
        return batch.present.to(device=batch.losses.device, dtype=torch.float32)
