"""Held-out human chit-chat dialogues (``chitchat:heldout``) as a golden-history suite.

The conversations come from :func:`resure.data.load_conversations` with the source
``chitchat:heldout``, the fixed split never used for training. Each user message becomes
a turn and each human assistant message its reference; the model answers every turn
afresh after the humans' own earlier turns (``history="golden"``).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from resure.conversation import Conversation
from resure.eval.suites.base import SUITES, Suite
from resure.eval.suites.definitions import SuiteDataError, load_definition
from resure.eval.types import EvalItem

logger = logging.getLogger(__name__)

NAME = "chitchat_heldout"
SOURCE = "chitchat:heldout"


@SUITES.register(NAME, aliases=("chitchat",))
class ChitchatHeldout(Suite):
    """Real chit-chat conversations of the held-out split.

    Args:
        limit: keep this many conversations, drawn with ``seed`` (the same ones on every
            run); None keeps all.
        max_turns: keep only the first ``max_turns`` (user, assistant) rounds of each.
        seed: seed of the draw (default: the definition's ``subset.seed``).

    Notes:
        The dialogues ship with the ``chitchat-dataset`` package, so there is no data
        directory; a ``data_dir`` given to :meth:`load` is ignored with a warning.
        Dialogues that the loader refuses (for example ones ending with the user's
        message) are left out and counted in a warning.
    """

    def __init__(self, limit: int | None = None, max_turns: int | None = None,
                 seed: int | None = None):
        for option, value in (("limit", limit), ("max_turns", max_turns)):
            if value is not None and value < 1:
                raise ValueError(f"{option} must be >= 1, got {value}")
        self.definition = load_definition(NAME)
        self.limit = limit
        self.max_turns = max_turns
        self.seed = self.definition.table["subset"]["seed"] if seed is None else seed

    def load(self, data_dir: str | Path | None = None) -> list[EvalItem]:
        from resure.data import load_conversations

        if data_dir is not None:
            logger.warning("%s reads the chitchat-dataset package; ignoring data_dir=%s",
                           NAME, data_dir)
        result = load_conversations(SOURCE, policy="skip")
        if result.skipped:
            logger.warning("%s: %d dialogues refused by the loader and left out",
                           NAME, len(result.skipped))
        convs = sorted(result.conversations, key=lambda c: c.id)
        if self.limit is not None and self.limit < len(convs):
            convs = random.Random(self.seed).sample(convs, self.limit)
            convs.sort(key=lambda c: c.id)
        items = [self._item(conv) for conv in convs]
        logger.info("%s: %d dialogues", NAME, len(items))
        return items

    def _item(self, conv: Conversation) -> EvalItem:
        messages = list(conv.messages)
        system = messages.pop(0).content if messages and messages[0].role == "system" else None
        roles = [m.role for m in messages]
        expected = ["user", "assistant"] * (len(messages) // 2)
        if not messages or roles != expected:
            raise SuiteDataError(
                f"{SOURCE} dialogue {conv.id!r}: expected alternating user/assistant "
                f"messages ending with the assistant, got {roles}"
            )
        pairs = list(zip(messages[::2], messages[1::2], strict=True))
        if self.max_turns is not None:
            pairs = pairs[: self.max_turns]
        return EvalItem(
            suite=NAME,
            question_id=conv.id,
            category="chitchat",
            turns=tuple(u.content for u, _ in pairs),
            reference=tuple(a.content for _, a in pairs),
            history="golden",
            temperature=self.definition.temperature,
            system=system,
            meta={"num_source_turns": len(messages) // 2},
        )
