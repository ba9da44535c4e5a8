"""Registry of weighting methods (decorator and ``resure.weightings`` entry points)."""

from __future__ import annotations

from resure.registry import Registry
from resure.weighting.base import WeightingMethod

WEIGHTINGS: Registry[WeightingMethod] = Registry(
    "weighting method", WeightingMethod, entry_point_group="resure.weightings"
)


def register_weighting(name: str, aliases: tuple[str, ...] = ()):
    """Class decorator: ``@register_weighting("my_method")``."""
    return WEIGHTINGS.register(name, aliases)


def available_weightings() -> list[str]:
    """Names of the built-in and plug-in weighting methods, sorted."""
    _load_builtins()
    return WEIGHTINGS.names()


def get_weighting(name: str, **options) -> WeightingMethod:
    """Instantiate the method registered under ``name``; options go to its constructor."""
    _load_builtins()
    return WEIGHTINGS.get(name)(**options)


def _load_builtins() -> None:
    # Imported lazily so that the base module has no import cycle with the methods.
    import resure.weighting.methods  # noqa: F401
