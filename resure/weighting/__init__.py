"""Weighting methods and their registry.

>>> from resure.weighting import get_weighting
>>> method = get_weighting("resure", threshold=2.0)
"""

from resure.weighting.base import TurnBatch, WeightingMethod
from resure.weighting.registry import (
    WEIGHTINGS,
    available_weightings,
    get_weighting,
    register_weighting,
)

__all__ = [
    "WEIGHTINGS",
    "TurnBatch",
    "WeightingMethod",
    "available_weightings",
    "get_weighting",
    "register_weighting",
]
