"""The prepare-data stage: load the sources, trim dialogues, draw and corrupt the pool.

The pool of a :class:`~resure.sweep.plan.DataJob` holds ``max(sizes)`` dialogues in
training order; each training size is a prefix of it (see :mod:`resure.sweep.mixtures`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from typing import Any

from resure.conversation import Conversation
from resure.sweep.mixtures import (
    corrupt,
    corruption_stats,
    draw_pool,
    nested_subsets,
    seed_for,
    trim_dialogue,
)
from resure.sweep.plan import DataJob

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SourceData:
    """The usable dialogues of one source and what was left out."""

    conversations: tuple[Conversation, ...]
    loaded: int
    skipped_records: int
    too_short: int


@functools.cache
def load_source(source: str, format: str | None, min_turns: int,
                max_turns: int | None) -> SourceData:
    """Dialogues of ``source`` with at least ``min_turns`` assistant turns, each cut after
    its ``max_turns``-th assistant turn (records the loader refuses are counted)."""
    from resure.data import load_conversations

    fmt = None if source.startswith("chitchat") else format
    result = load_conversations(source, format=fmt, policy="skip")
    if result.skipped:
        logger.warning("%s: %d records refused by the loader and left out", source,
                       len(result.skipped))
    kept = [trim_dialogue(c, max_turns) for c in result.conversations
            if c.num_assistant_turns >= min_turns]
    return SourceData(tuple(kept), len(result.conversations), len(result.skipped),
                      len(result.conversations) - len(kept))


def prepare_pool(job: DataJob, sizes: Sequence[int]) -> tuple[list[Conversation], dict]:
    """The corrupted pool of ``job`` and its statistics (overall and per prefix size)."""
    d = job.data
    loaded = {
        src: load_source(src, d["format"], d["min_assistant_turns"], d["max_assistant_turns"])
        for src, _ in job.mixture.sources
    }
    pool = draw_pool({s: v.conversations for s, v in loaded.items()}, job.mixture.sources,
                     job.pool_size, job.data_seed)
    result = corrupt(pool, job.mixture.corrupt_fraction, job.mixture.kinds,
                     seed_for(job.data_seed, job.mixture.identity()))
    prefixes = nested_subsets(result.conversations, sizes)
    stats = {
        "mixture": job.mixture.label,
        "identity": job.identity(),
        "sources": {s: {"loaded": v.loaded, "refused": v.skipped_records,
                        "too_short": v.too_short, "usable": len(v.conversations)}
                    for s, v in loaded.items()},
        "pool": _stats_dict(corruption_stats(result.conversations)),
        "prefixes": {str(n): _stats_dict(corruption_stats(p)) for n, p in prefixes.items()},
    }
    logger.info("pool %s: %d dialogues, %d of %d assistant turns corrupted (%s)",
                job.dirname, len(pool), result.num_corrupted, result.num_turns, result.counts)
    return result.conversations, stats


def _stats_dict(s) -> dict[str, Any]:
    return {**dataclasses.asdict(s), "rate": s.rate}
