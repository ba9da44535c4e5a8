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


@dataclasses.dataclass
class FitCounts:
    """Why dialogues read while drawing a pool were passed over."""

    read: int = 0
    too_few_turns: int = 0
    unencodable: int = 0
    turns_cut: int = 0
    cut_after_corruption: int = 0
    corruption_reverted: int = 0


@functools.cache
def load_source(source: str, format: str | None) -> tuple[tuple[Conversation, ...], int]:
    """Valid dialogues of ``source`` and the number of records the loader refused."""
    from resure.data import load_conversations

    fmt = None if source.startswith("chitchat") else format
    result = load_conversations(source, format=fmt, policy="skip")
    if result.skipped:
        logger.warning("%s: %d records refused by the loader and left out", source,
                       len(result.skipped))
    return tuple(result.conversations), len(result.skipped)


def make_fit(min_turns: int, max_turns: int | None, tokenizer=None,
             max_length: int | None = None, counts: FitCounts | None = None):
    """The per-dialogue step of :func:`~resure.sweep.mixtures.draw_pool`.

    A dialogue is cut after its ``max_turns``-th assistant turn, then (with a tokenizer
    and ``max_length``) after the last assistant turn that fits in ``max_length`` tokens;
    it is passed over when fewer than ``min_turns`` assistant turns remain or when it
    cannot be encoded at all.
    """
    from resure.tokenize import EncodeError, encode_conversation

    counts = counts if counts is not None else FitCounts()

    def fit(conv: Conversation) -> Conversation | None:
        counts.read += 1
        conv = trim_dialogue(conv, max_turns)
        if tokenizer is not None and max_length is not None:
            try:
                kept = len(encode_conversation(conv, tokenizer, max_length).corruption)
            except EncodeError:
                counts.unencodable += 1
                return None
            if kept < conv.num_assistant_turns:
                counts.turns_cut += 1
                conv = trim_dialogue(conv, kept)
        if conv.num_assistant_turns < min_turns:
            counts.too_few_turns += 1
            return None
        return conv

    return fit


def prepare_pool(job: DataJob, sizes: Sequence[int], tokenizer=None
                 ) -> tuple[list[Conversation], dict]:
    """The corrupted pool of ``job`` and its statistics (overall and per prefix size)."""
    d = job.data
    loaded = {src: load_source(src, d["format"]) for src, _ in job.mixture.sources}
    counts = FitCounts()
    fit = make_fit(d["min_assistant_turns"], d["max_assistant_turns"], tokenizer,
                   job.max_length, counts)
    pool = draw_pool({s: convs for s, (convs, _) in loaded.items()}, job.mixture.sources,
                     job.pool_size, job.data_seed, fit)
    result = corrupt(pool, job.mixture.corrupt_fraction, job.mixture.kinds,
                     seed_for(job.data_seed, job.mixture.identity()))
    final = result.conversations
    if tokenizer is not None and job.max_length is not None:
        final = refit(final, pool, tokenizer, job.max_length, counts)
    prefixes = nested_subsets(final, sizes)
    stats = {
        "mixture": job.mixture.label,
        "identity": job.identity(),
        "sources": {s: {"valid": len(convs), "refused_by_loader": refused}
                    for s, (convs, refused) in loaded.items()},
        "fit": dataclasses.asdict(counts),
        "pool": _stats_dict(corruption_stats(final)),
        "prefixes": {str(n): _stats_dict(corruption_stats(p)) for n, p in prefixes.items()},
    }
    logger.info("pool %s: %d dialogues, %d of %d assistant turns corrupted (%s)",
                job.dirname, len(pool), result.num_corrupted, result.num_turns, result.counts)
    return final, stats


def refit(corrupted: Sequence[Conversation], originals: Sequence[Conversation], tokenizer,
          max_length: int, counts: FitCounts) -> list[Conversation]:
    """Fit corrupted dialogues into ``max_length`` tokens again.

    A corrupted turn can be longer than the one it replaced: later turns that no longer
    fit are cut (as training would), and a dialogue whose first assistant turn no longer
    fits at all goes back to its uncorrupted form, so that every dialogue of the pool is
    trained on. Both are counted; the pool's statistics are taken afterwards.
    """
    from resure.tokenize import TruncationError, encode_conversation

    out = []
    for conv, original in zip(corrupted, originals, strict=True):
        try:
            kept = len(encode_conversation(conv, tokenizer, max_length).corruption)
        except TruncationError:
            counts.corruption_reverted += 1
            out.append(original)
            continue
        if kept < conv.num_assistant_turns:
            counts.cut_after_corruption += 1
            conv = trim_dialogue(conv, kept)
        out.append(conv)
    if counts.corruption_reverted:
        logger.warning("%d corrupted dialogues no longer fit in max_length=%d and were kept "
                       "uncorrupted", counts.corruption_reverted, max_length)
    return out


def _stats_dict(s) -> dict[str, Any]:
    return {**dataclasses.asdict(s), "rate": s.rate}
