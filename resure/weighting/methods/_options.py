"""Option checks shared by the weighting methods; each error names the option."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any


def check_choice(option: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else ValueError listing the choices."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{option} must be one of {choices}; got {value!r}")
    return value


def check_bool(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{option} must be True or False; got {value!r}")
    return value


def check_int(option: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{option} must be an integer >= {minimum}; got {value!r}")
    return value


def check_real(
    option: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``float(value)`` if it is a finite real number in the interval, else ValueError."""
    left, right = ("(" if low_open else "["), (")" if high_open or high == math.inf else "]")
    interval = f"{left}{low}, {high}{right}"
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{option} must be a number in {interval}; got {value!r}")
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        raise ValueError(f"{option} must be a number in {interval}; got {value!r}")
    return float(value)


def refuse_unknown(method: str, unknown: dict[str, Any], known: Iterable[str]) -> None:
    """ValueError naming the first unknown option (and the closest known one)."""
    if not unknown:
        return
    known = sorted(known)
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none"
    raise ValueError(
        f"unknown option {name!r} for weighting method {method!r}{hint} (known options: {listing})"
    )
