"""The generation-backend interface and registry.

Besides the :class:`Backend` interface this module holds what the built-in backends share:
:func:`turn_messages` (the chat a model sees for one turn under own or golden history),
:func:`plan_rounds` (which turns can be batched together) and :class:`TurnBackend`, which
runs the rounds and assembles answers. Failed turns are never turned into empty answers:
they raise :class:`GenerationError`, which carries the answers that did succeed.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

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
    return BACKENDS.create(name, **options)


# --- turn-by-turn generation shared by the built-in backends -------------------------------


class GenerationError(RuntimeError):
    """Some turns could not be generated (after the client's own retries).

    Attributes:
        failures: one :class:`TurnFailure` per failed item (its first failed turn).
        answers: the answers of the items that did succeed, so that callers can keep
            them and retry only the failed items.
    """

    def __init__(self, failures: Sequence[TurnFailure], answers: Sequence[Answer]):
        self.failures = list(failures)
        self.answers = list(answers)
        first = self.failures[0]
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        super().__init__(
            f"{len(self.failures)} item(s) failed; question {first.question_id!r} turn "
            f"{first.turn}: {first.error}{more}"
        )


@dataclass(frozen=True)
class TurnFailure:
    """A turn with no answer: which item, which turn (1-based) and why."""

    question_id: int | str
    turn: int
    error: str


@dataclass(frozen=True)
class TurnRequest:
    """One prompt to answer: turn ``turn`` (0-based) of ``items[index]``.

    ``messages`` are ``{"role", "content"}`` dicts ready for a chat template or a chat
    API; ``temperature`` is the effective one (the run's, else the item's).
    """

    index: int
    question_id: int | str
    turn: int
    messages: tuple[dict[str, str], ...]
    temperature: float


def effective_temperature(item: EvalItem, sampling: SamplingParams) -> float:
    """The run's temperature if set, else the one the item's protocol asks for."""
    return item.temperature if sampling.temperature is None else sampling.temperature


def turn_messages(
    item: EvalItem, turn: int, answers: Sequence[str | None]
) -> tuple[dict[str, str], ...]:
    """The chat a model sees when answering turn ``turn`` (0-based) of ``item``.

    Earlier assistant messages are the item's ``reference`` turns under golden history
    and the model's own ``answers`` under own history.
    """
    if item.history == "golden":
        if item.reference is None or len(item.reference) < turn:
            raise ValueError(f"item {item.question_id!r}: golden history needs reference turns")
        earlier = item.reference[:turn]
    else:
        earlier = answers[:turn]
        if any(a is None for a in earlier):
            raise ValueError(f"item {item.question_id!r}: turn {turn + 1} asked before turn "
                             f"{earlier.index(None) + 1} was answered")
    messages = [{"role": "system", "content": item.system}] if item.system else []
    for user, assistant in zip(item.turns[:turn], earlier, strict=True):
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    messages.append({"role": "user", "content": item.turns[turn]})
    return tuple(messages)


def plan_rounds(items: Sequence[EvalItem]) -> list[list[tuple[int, int]]]:
    """``(item index, turn)`` pairs grouped into rounds that can run as one batch.

    A golden-history item puts all its turns in round 0 (they depend on nothing
    generated); an own-history item puts turn ``t`` in round ``t``, after its turn
    ``t - 1`` was answered.
    """
    rounds: list[list[tuple[int, int]]] = []
    for i, item in enumerate(items):
        for t in range(len(item.turns)):
            r = 0 if item.history == "golden" else t
            while len(rounds) <= r:
                rounds.append([])
            rounds[r].append((i, t))
    return rounds


Completion = str | TurnFailure


class TurnBackend(Backend):
    """A backend that answers turn by turn, batching across items within a round.

    Subclasses implement :meth:`complete` (answer a batch of prompts) and
    :meth:`identity`; :meth:`generate` schedules the rounds, threads each item's history
    and assembles :class:`~resure.eval.types.Answer` objects. An item whose turn fails
    gets no answer at all (later turns of an own-history item cannot be asked), and
    :class:`GenerationError` is raised once every other item is done.
    """

    model_id: str = ""

    @abstractmethod
    def complete(
        self, requests: Sequence[TurnRequest], sampling: SamplingParams,
        progress: Callable[[int], object],
    ) -> list[Completion]:
        """One completion (text or :class:`TurnFailure`) per request, in order; call
        ``progress(n)`` as ``n`` more requests finish."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What determines the answers besides sampling: backend, model, adapter,
        chat_template_hash (None where the template is unknown, as behind an API)."""

    def generate(self, items: Sequence[EvalItem], sampling: SamplingParams) -> list[Answer]:
        from tqdm.auto import tqdm

        texts: list[list[str | None]] = [[None] * len(item.turns) for item in items]
        failed: dict[int, TurnFailure] = {}
        total = sum(len(item.turns) for item in items)
        with tqdm(total=total, desc=f"{self.name} generate", unit="turn") as bar:
            for plan in plan_rounds(items):
                requests = [
                    TurnRequest(i, items[i].question_id, t,
                                turn_messages(items[i], t, texts[i]),
                                effective_temperature(items[i], sampling))
                    for i, t in plan if i not in failed
                ]
                bar.update(len(plan) - len(requests))  # turns of already failed items
                outputs = self.complete(requests, sampling, bar.update)
                if len(outputs) != len(requests):
                    raise RuntimeError(f"{self.name}: {len(outputs)} completions for "
                                       f"{len(requests)} prompts")
                for req, out in zip(requests, outputs, strict=True):
                    if isinstance(out, TurnFailure):
                        failed.setdefault(req.index, out)
                    else:
                        texts[req.index][req.turn] = out.strip()
        answers = [
            self._answer(item, texts[i], sampling)
            for i, item in enumerate(items) if i not in failed
        ]
        if failed:
            raise GenerationError([failed[i] for i in sorted(failed)], answers)
        return answers

    def _answer(self, item: EvalItem, turns: Sequence[str | None], sampling) -> Answer:
        generation = {
            **self.identity(),
            "sampling": asdict(sampling),
            "temperature": effective_temperature(item, sampling),
            "history": item.history,
        }
        return Answer(
            question_id=item.question_id,
            model_id=self.model_id,
            turns=tuple(t for t in turns if t is not None),
            answer_id=uuid.uuid4().hex,
            tstamp=time.time(),
            generation=generation,
        )
