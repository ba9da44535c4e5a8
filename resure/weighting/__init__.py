"""Weighting methods and their registry.

>>> from resure.weighting import get_weighting
>>> method = get_weighting("resure", threshold=2.0)
"""

from resure.weighting.base import TurnBatch, WeightingMethod
from resure.weighting.registry import (
    available_weightings,
    get_weighting,
    register_weighting,
)

__all__ = [
    "TurnBatch",
    "WeightingMethod",
    "available_weightings",
    "get_weighting",
    "register_weighting",
]
