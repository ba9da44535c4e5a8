"""The suite interface and registry.

A suite reads benchmark files in their original format from a directory the user gives
(``--data-dir`` or the suite's environment variable) and yields
:class:`~resure.eval.types.EvalItem` objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from resure.eval.types import EvalItem
from resure.registry import Registry


class Suite(ABC):
    """Base class of suites; register with ``@SUITES.register("name")``."""

    name: ClassVar[str] = ""
    #: environment variable naming the data directory, e.g. ``RESURE_MT_BENCH_DIR``.
    env_var: ClassVar[str | None] = None

    @abstractmethod
    def load(self, data_dir: str | Path | None = None) -> list[EvalItem]:
        """Items of the suite, read from ``data_dir`` (or the environment variable)."""


SUITES: Registry[Suite] = Registry("suite", Suite, entry_point_group="resure.suites")


def get_suite(name: str, **options) -> Suite:
    return SUITES.create(name, **options)
