"""The generation-backend interface and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from resure.eval.types import Answer, EvalItem
from resure.registry import Registry


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by all backends.

    ``temperature=None`` means: use each item's own temperature (the protocol's).
    """

    max_new_tokens: int = 256
    temperature: float | None = None
    top_p: float = 1.0
    seed: int = 0


class Backend(ABC):
    """Base class of generation backends; register with ``@BACKENDS.register("name")``."""

    name: ClassVar[str] = ""

    @abstractmethod
    def generate(self, items: Sequence[EvalItem], sampling: SamplingParams) -> list[Answer]:
        """Answer every turn of every item, following each item's history mode."""


BACKENDS: Registry[Backend] = Registry("backend", Backend, entry_point_group="resure.backends")


def get_backend(name: str, **options) -> Backend:
    return BACKENDS.get(name)(**options)
