"""Training-data quality mixtures: a seeded pool of dialogues and corrupted assistant turns.

A mixture is built in three steps, each a pure function of its inputs and a seed:

1. :func:`draw_pool` takes ``size`` dialogues from one or more sources in given shares.
   Each source is put in a seeded random order, and the sources are interleaved so that
   every prefix of the pool holds them in (rounded) proportion. Taking a prefix of a
   larger pool therefore gives the same dialogues as drawing a smaller one.
2. :func:`corrupt` corrupts a given fraction of the pool's assistant turns, split across
   corruption kinds by weight, and labels them (see below).
3. :func:`nested_subsets` returns prefixes of the corrupted pool, one per training size,
   so that the 64 dialogues of size 64 are the first 64 of size 128, with the very same
   corruptions: a dialogue's corruption is decided once on the whole pool and does not
   depend on the training size.

Labels. A corrupted assistant message carries ``meta["corruption"] = kind``; every
message after it in the same dialogue carries ``meta["context_corrupted"] = True`` (its
context contains the corrupted turn).

Kinds, modelled on what low-quality dialogue data contains:

- ``swap``: the response belongs to another dialogue of the pool (off-topic answer).
- ``truncate``: the response is cut short after 10-50% of its words.
- ``repetition``: a degenerate loop repeating an opening fragment of the response.
- ``boilerplate``: a canned refusal or assistant boilerplate unrelated to the request.
- ``noise``: random character strings (encoding garbage, scraping noise).
- ``off_domain``: a response from another domain or language (code, legal text, French,
  German, Spanish...), from a fixed built-in list.
- ``shuffle``: two responses of the same dialogue trade places; both are labelled.
- ``cascade``: the first assistant turn is replaced by another dialogue's response while
  the later turns are kept, so every later turn is trained in a corrupted context.

Notes:
    The corrupted share is exact on the pool (``round(fraction * turns)``) and
    approximately equal on its prefixes (the selection is uniform over turns). When too
    few turns are eligible for a kind (``shuffle`` needs two distinct responses in a
    dialogue, ``cascade`` a dialogue of two or more assistant turns, ``truncate`` two
    words), the shortfall passes to the next kind and a warning is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from resure.conversation import Conversation, Message

logger = logging.getLogger(__name__)

# Kinds that need particular turns are allocated first, so that the unconstrained kinds
# can absorb a shortfall.
KIND_ORDER = (
    "cascade",
    "shuffle",
    "truncate",
    "swap",
    "repetition",
    "boilerplate",
    "noise",
    "off_domain",
)

BOILERPLATE = (
    "I'm sorry, but I can't help with that request.",
    "As an AI language model, I do not have personal opinions or feelings.",
    "I am unable to provide that information. Please consult a qualified professional.",
    "Sorry, I cannot assist with this. Is there anything else I can help you with?",
    "Thank you for your message. Your request has been received and will be processed.",
    "I apologize for any confusion. As an assistant, I cannot engage in this conversation.",
)

OFF_DOMAIN = (
    "def parse(path):\n    with open(path) as f:\n        return [line.split(',') for line in f]",
    "SELECT customer_id, SUM(amount) FROM orders GROUP BY customer_id HAVING SUM(amount) > 100;",
    "The lessee shall indemnify the lessor against all claims arising from the use of the "
    "premises during the term of this agreement.",
    "Preheat the oven to 200 degrees. Whisk two eggs with the flour, then fold in the butter.",
    "La réunion est reportée à jeudi prochain en raison des travaux dans le bâtiment.",
    "Der Zug nach München fährt heute wegen einer Störung von Gleis sieben ab.",
    "El informe trimestral muestra un aumento de las ventas en la región norte.",
    "Il pacco verrà consegnato entro tre giorni lavorativi dalla conferma dell'ordine.",
    "Dosage: take one tablet twice daily with food. Do not exceed the stated dose.",
    "The derivative of x squared times sine x is 2x sin x plus x squared cos x.",
)

NOISE_ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789#$%&*+=<>/\\|~^_"))


@dataclass(frozen=True)
class CorruptionResult:
    """The corrupted pool and what was done to it.

    Attributes:
        conversations: the pool, in the same order, with labelled corrupted turns.
        num_turns: assistant turns in the pool.
        counts: corrupted assistant turns per kind.
    """

    conversations: list[Conversation]
    num_turns: int
    counts: dict[str, int]

    @property
    def num_corrupted(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        return self.num_corrupted / self.num_turns if self.num_turns else 0.0


@dataclass(frozen=True)
class CorruptionStats:
    """Labels counted on a list of dialogues (see :func:`corruption_stats`)."""

    dialogues: int
    assistant_turns: int
    corrupted_turns: int
    context_corrupted_turns: int
    by_kind: dict[str, int]

    @property
    def rate(self) -> float:
        return self.corrupted_turns / self.assistant_turns if self.assistant_turns else 0.0


def seed_for(*parts: object) -> int:
    """A 64-bit seed from any JSON-able parts (stable across runs and machines)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# --------------------------------------------------------------------------------------
# Pool


def trim_dialogue(conv: Conversation, max_assistant_turns: int | None) -> Conversation:
    """Keep the messages up to the ``max_assistant_turns``-th assistant message."""
    if max_assistant_turns is None or conv.num_assistant_turns <= max_assistant_turns:
        return conv
    seen = 0
    for i, m in enumerate(conv.messages):
        seen += m.role == "assistant"
        if seen == max_assistant_turns:
            return replace(conv, messages=conv.messages[: i + 1])
    raise AssertionError("unreachable: counted more assistant turns than found")


def allocate(total: int, shares: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``shares`` (largest remainder)."""
    raw = [total * s for s in shares]
    out = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def draw_pool(
    sources: Mapping[str, Sequence[Conversation]],
    shares: Sequence[tuple[str, float]],
    size: int,
    seed: int,
    fit: Callable[[Conversation], Conversation | None] | None = None,
) -> list[Conversation]:
    """``size`` dialogues drawn from ``sources`` in the given ``(source, share)`` shares.

    Each source is permuted with a seed derived from ``seed`` and the source name and
    read in that order; ``fit`` (if given) maps each dialogue to the form it is trained
    in, or to None to pass over it (e.g. too short, or too long for the model). The
    pool's position ``i`` takes the next dialogue of the source furthest below its share
    of ``i + 1``. The result is prefix-stable: ``draw_pool(.., n, s)`` is the first ``n``
    of ``draw_pool(.., m, s)`` for ``m >= n``. Only as many dialogues as needed are
    passed to ``fit``.

    Raises:
        ValueError: a source holds fewer usable dialogues than its share of ``size``.
    """
    names = [name for name, _ in shares]
    weights = [w for _, w in shares]
    need = dict(zip(names, allocate(size, weights), strict=True))
    taken_by_source = {}
    for name in names:
        convs = sources[name]
        rng = np.random.default_rng(seed_for("pool", seed, name))
        kept: list[Conversation] = []
        for i in rng.permutation(len(convs)):
            if len(kept) == need[name]:
                break
            conv = convs[i] if fit is None else fit(convs[i])
            if conv is not None:
                kept.append(conv)
        if len(kept) < need[name]:
            raise ValueError(
                f"source {name!r} has {len(kept)} usable dialogues (of {len(convs)}); the "
                f"mixture needs {need[name]} of a pool of {size}"
            )
        taken_by_source[name] = kept
    taken = [0] * len(names)
    pool = []
    for i in range(size):
        # The source furthest below its share of i + 1 goes next (ties: listed order).
        j = max(range(len(names)), key=lambda s: (weights[s] * (i + 1) - taken[s], -s))
        pool.append(taken_by_source[names[j]][taken[j]])
        taken[j] += 1
    return pool


def nested_subsets(pool: Sequence[Conversation], sizes: Sequence[int]) -> dict[int, list]:
    """The first ``n`` dialogues of ``pool`` for each ``n`` in ``sizes``."""
    if max(sizes) > len(pool):
        raise ValueError(f"size {max(sizes)} exceeds the pool of {len(pool)} dialogues")
    return {n: list(pool[:n]) for n in sizes}


# --------------------------------------------------------------------------------------
# Corruption


@dataclass(frozen=True)
class _Turn:
    conv: int  # index in the pool
    msg: int  # index in the dialogue's messages
    k: int  # 0-based assistant-turn index


def _assistant_turns(pool: Sequence[Conversation]) -> list[_Turn]:
    out = []
    for c, conv in enumerate(pool):
        k = 0
        for m, msg in enumerate(conv.messages):
            if msg.role == "assistant":
                out.append(_Turn(c, m, k))
                k += 1
    return out


def corrupt(
    pool: Sequence[Conversation],
    fraction: float,
    kinds: Sequence[tuple[str, float]],
    seed: int,
) -> CorruptionResult:
    """Corrupt ``round(fraction * assistant turns)`` turns of ``pool`` (see module doc).

    Args:
        pool: the dialogues; not modified.
        fraction: share of assistant turns to corrupt, in [0, 1).
        kinds: ``(kind, weight)`` pairs; the count of each kind is proportional to its
            weight (largest remainder).
        seed: everything random derives from it.

    Returns:
        The labelled pool (same order and ids) and the counts per kind.
    """
    unknown = [k for k, _ in kinds if k not in KIND_ORDER]
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"corrupt fraction must be in [0, 1), got {fraction}")
    if fraction > 0 and not kinds:
        raise ValueError("a corrupt fraction > 0 needs at least one corruption kind")
    if unknown:
        raise ValueError(f"unknown corruption kind(s) {unknown}; known: {', '.join(KIND_ORDER)}")
    turns = _assistant_turns(pool)
    target = round(fraction * len(turns))
    total_weight = sum(w for _, w in kinds)
    shares = [w / total_weight for _, w in kinds] if total_weight > 0 else []
    wanted = dict(zip([k for k, _ in kinds], allocate(target, shares), strict=True))
    rng = np.random.default_rng(seed_for("corrupt", seed))
    contents = [[m.content for m in conv.messages] for conv in pool]
    labels: dict[tuple[int, int], str] = {}
    carry = 0
    for kind in KIND_ORDER:
        if kind not in wanted:
            continue
        count = wanted[kind] + carry
        done = _APPLY[kind](pool, turns, labels, contents, count, rng)
        carry = count - done
        if carry:
            logger.warning("corruption %r: only %d of %d turns eligible; %d passed on",
                           kind, done, count, carry)
    if carry:
        logger.warning("corrupted %d turns instead of %d (not enough eligible turns)",
                       target - carry, target)
    out = [_relabel(conv, contents[c], labels, c) for c, conv in enumerate(pool)]
    return CorruptionResult(out, len(turns), dict(Counter(labels.values())))


def _relabel(conv: Conversation, texts: list[str], labels, c: int) -> Conversation:
    """Rebuild a dialogue with new texts, ``corruption`` and ``context_corrupted`` labels."""
    messages = []
    tainted = False
    for m, (msg, text) in enumerate(zip(conv.messages, texts, strict=True)):
        meta = dict(msg.meta)
        if tainted:
            meta["context_corrupted"] = True
        if (c, m) in labels:
            meta["corruption"] = labels[(c, m)]
            tainted = True
        messages.append(Message(msg.role, text, meta))
    return replace(conv, messages=tuple(messages))


def _pick(free: list[_Turn], count: int, rng: np.random.Generator) -> list[_Turn]:
    count = min(count, len(free))
    idx = rng.choice(len(free), size=count, replace=False) if count else []
    return [free[i] for i in sorted(idx)]


def _free(turns, labels, ok=lambda t: True) -> list[_Turn]:
    return [t for t in turns if (t.conv, t.msg) not in labels and ok(t)]


def _apply_simple(kind: str, make, min_words: int = 0):
    """A kind that rewrites one turn's text with ``make(text, turn, rng) -> str``; only
    turns of at least ``min_words`` words are eligible."""

    def apply(pool, turns, labels, contents, count, rng):
        def ok(t: _Turn) -> bool:
            return len(contents[t.conv][t.msg].split()) >= min_words

        chosen = _pick(_free(turns, labels, ok), count, rng)
        for t in chosen:
            contents[t.conv][t.msg] = make(contents[t.conv][t.msg], t, rng)
            labels[(t.conv, t.msg)] = kind
        return len(chosen)

    return apply


def _truncated(text: str, t: _Turn, rng: np.random.Generator) -> str:
    words = text.split()
    keep = max(1, math.floor(len(words) * rng.uniform(0.1, 0.5)))
    return " ".join(words[:keep])


def _repetition(text: str, t: _Turn, rng: np.random.Generator) -> str:
    words = text.split()
    span = int(rng.integers(1, 4))
    fragment = " ".join(words[:span]) if len(words) >= span else "I think"
    repeats = int(rng.integers(6, 13))
    return " ".join([fragment] * repeats)


def _boilerplate(text: str, t: _Turn, rng: np.random.Generator) -> str:
    return BOILERPLATE[int(rng.integers(len(BOILERPLATE)))]


def _noise(text: str, t: _Turn, rng: np.random.Generator) -> str:
    n_words = int(rng.integers(5, 13))
    return " ".join(
        "".join(rng.choice(NOISE_ALPHABET, size=int(rng.integers(2, 9)))) for _ in range(n_words)
    )


def _off_domain(text: str, t: _Turn, rng: np.random.Generator) -> str:
    return OFF_DOMAIN[int(rng.integers(len(OFF_DOMAIN)))]


def _donor(pool, turns, t: _Turn, rng) -> str:
    """The original text of a random assistant turn of another dialogue."""
    while True:
        d = turns[int(rng.integers(len(turns)))]
        if d.conv != t.conv:
            return pool[d.conv].messages[d.msg].content


def _apply_swap(pool, turns, labels, contents, count, rng):
    if len(pool) < 2:
        return 0
    chosen = _pick(_free(turns, labels), count, rng)
    for t in chosen:
        contents[t.conv][t.msg] = _donor(pool, turns, t, rng)
        labels[(t.conv, t.msg)] = "swap"
    return len(chosen)


def _apply_cascade(pool, turns, labels, contents, count, rng):
    if len(pool) < 2:
        return 0
    multi = {t.conv for t in turns if t.k == 1}
    chosen = _pick(_free(turns, labels, lambda t: t.k == 0 and t.conv in multi), count, rng)
    for t in chosen:
        contents[t.conv][t.msg] = _donor(pool, turns, t, rng)
        labels[(t.conv, t.msg)] = "cascade"
    return len(chosen)


def _apply_shuffle(pool, turns, labels, contents, count, rng):
    """Swap pairs of responses within a dialogue; each pair counts two corrupted turns."""
    done = 0
    free = _free(turns, labels)
    by_conv: dict[int, list[_Turn]] = {}
    for t in free:
        by_conv.setdefault(t.conv, []).append(t)
    firsts = [t for t in free if _partners(t, by_conv, contents)]
    for i in rng.permutation(len(firsts)):
        t = firsts[i]
        if done + 2 > count:
            break
        partners = [p for p in _partners(t, by_conv, contents) if (p.conv, p.msg) not in labels]
        if (t.conv, t.msg) in labels or not partners:
            continue
        p = partners[int(rng.integers(len(partners)))]
        row = contents[t.conv]
        row[t.msg], row[p.msg] = row[p.msg], row[t.msg]
        labels[(t.conv, t.msg)] = labels[(p.conv, p.msg)] = "shuffle"
        done += 2
    return done


def _partners(t: _Turn, by_conv, contents) -> list[_Turn]:
    row = contents[t.conv]
    return [p for p in by_conv.get(t.conv, ()) if p.msg != t.msg and row[p.msg] != row[t.msg]]


_APPLY = {
    "cascade": _apply_cascade,
    "shuffle": _apply_shuffle,
    "truncate": _apply_simple("truncate", _truncated, min_words=2),
    "swap": _apply_swap,
    "repetition": _apply_simple("repetition", _repetition),
    "boilerplate": _apply_simple("boilerplate", _boilerplate),
    "noise": _apply_simple("noise", _noise),
    "off_domain": _apply_simple("off_domain", _off_domain),
}


def corruption_stats(conversations: Sequence[Conversation]) -> CorruptionStats:
    """Count the labels of ``conversations`` (assistant turns only)."""
    turns = corrupted = context = 0
    kinds: Counter[str] = Counter()
    for conv in conversations:
        for m in conv.messages:
            if m.role != "assistant":
                continue
            turns += 1
            context += bool(m.meta.get("context_corrupted"))
            if "corruption" in m.meta:
                corrupted += 1
                kinds[m.meta["corruption"]] += 1
    return CorruptionStats(len(conversations), turns, corrupted, context, dict(kinds))
