"""The judge interface and registry.

A judge scores every turn of every answer (or, for ``reference_nll``, the reference turns
under a model, with no answers needed) and returns one :class:`~resure.eval.types.Judgment`
per (item, turn). A judge never turns a failure into a number: ``score`` is None and
``failure`` says why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from resure.eval.types import Answer, EvalItem, Judgment
from resure.registry import Registry


class Judge(ABC):
    """Base class of judges; register with ``@JUDGES.register("name")``."""

    name: ClassVar[str] = ""
    #: False for judges that score reference turns without generated answers.
    needs_answers: ClassVar[bool] = True
    #: False for judges whose score is a cost (``reference_nll``); reports flip its sign.
    higher_is_better: ClassVar[bool] = True

    @abstractmethod
    def judge(
        self, items: Sequence[EvalItem], answers: Sequence[Answer] | None
    ) -> list[Judgment]:
        """One judgment per judged (item, turn), failures included."""

    def identity(self) -> dict:
        """What determines this judge's scores (model, scale, prompt set): for cache keys
        and run manifests."""
        return {"judge": self.name}


JUDGES: Registry[Judge] = Registry("judge", Judge, entry_point_group="resure.judges")


def get_judge(name: str, **options) -> Judge:
    """Instantiate the judge registered under ``name`` with ``options``."""
    return JUDGES.create(name, **options)
