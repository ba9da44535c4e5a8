"""Loading dialogue data into validated :class:`~resure.conversation.Conversation` records.

Entry points: :func:`load_conversations` (a file in the ``openai``, ``sharegpt`` or
``mtbench101`` format, or the ``chitchat`` package with its fixed held-out split) and
:func:`save_conversations` (our own ``openai``-format JSONL). Every record goes through the
rules of :mod:`resure.data.validate`; a broken one raises :class:`DataError` naming its
location and the rule, or, under ``policy="skip"``, is listed in ``LoadResult.skipped``.
"""

from resure.data.chitchat import HELDOUT_PERCENT, chitchat_split
from resure.data.load import (
    FORMATS,
    POLICIES,
    LoadResult,
    load_conversations,
    save_conversations,
)
from resure.data.problems import DataError, RecordError, RecordProblem
from resure.data.validate import RULES, validate_conversation

__all__ = [
    "FORMATS",
    "HELDOUT_PERCENT",
    "POLICIES",
    "RULES",
    "DataError",
    "LoadResult",
    "RecordError",
    "RecordProblem",
    "chitchat_split",
    "load_conversations",
    "save_conversations",
    "validate_conversation",
]
