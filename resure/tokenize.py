"""Tokenise conversations with per-token labels and assistant-turn indices.

The rendering is delegated to the tokenizer's own chat template, so any Hugging Face
template works as long as it renders a conversation's prefixes as prefixes of the whole
rendering (see :func:`encode_conversation`).

What is trained on (``labels != -100``), for every assistant message:

* the tokens of its content, located in the rendered text (templates that ``trim`` the
  content are handled: the content is searched as given, then stripped);
* its *end-of-turn* tokens: every token from the end of the content up to and including
  the first special token the template writes after it, within that message's rendering
  (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3, ``<end_of_turn>`` for Gemma,
  ``</s>`` for Llama 2 and Mistral). A special token is one of the tokenizer's special
  tokens or an added token marked special.

Everything else (system and user messages, role headers, the generation prompt, the text
between messages) has label ``-100`` and turn index ``-1``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from resure.conversation import Conversation

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
NO_TURN = -1

Policy = Literal["error", "skip"]
POLICIES: tuple[str, ...] = ("error", "skip")


class EncodeError(ValueError):
    """A conversation that cannot be encoded; the message names its id and the reason."""


class TemplateError(EncodeError):
    """The chat template drops, alters or reorders content so turns cannot be located."""


class TruncationError(EncodeError):
    """Not even the first assistant turn fits within ``max_length`` tokens."""


@dataclass(frozen=True)
class EncodedDialogue:
    """One tokenised conversation.

    Attributes:
        input_ids: ``[S]`` token ids of the rendered conversation.
        labels: ``[S]`` the id where the token is trained on, ``-100`` elsewhere.
        turn_index: ``[S]`` ``k`` on the tokens of the k-th (0-based) assistant turn,
            ``-1`` elsewhere.
        sample_id: the conversation id.
        corruption: one entry per kept assistant turn, the corruption kind or None.
        context_corrupted: one entry per kept assistant turn, True when an earlier turn
            of its context is corrupted.
    """

    input_ids: list[int]
    labels: list[int]
    turn_index: list[int]
    sample_id: str
    corruption: tuple[str | None, ...]
    context_corrupted: tuple[bool, ...]

    @property
    def num_turns(self) -> int:
        """Number of (kept) assistant turns."""
        return len(self.corruption)

    def __len__(self) -> int:
        return len(self.input_ids)


class SkippedSample(NamedTuple):
    """A conversation left out by :func:`encode_many` under ``policy="skip"``."""

    sample_id: str
    reason: str


@dataclass(frozen=True)
class EncodeResult:
    """What :func:`encode_many` returns: the encoded dialogues and those skipped."""

    encoded: list[EncodedDialogue]
    skipped: list[SkippedSample]


@dataclass(frozen=True)
class _TurnSpan:
    """Character span of one assistant turn in the rendered text.

    ``content_start:content_end`` is the located content; ``segment_end`` is where the
    rendering of the conversation up to and including this message ends.
    """

    content_start: int
    content_end: int
    segment_end: int


def chat_template_hash(tokenizer) -> str:
    """First 12 hex digits of the sha256 of the tokenizer's chat template (for manifests)."""
    template = tokenizer.chat_template
    if template is None:
        raise ValueError("tokenizer has no chat template to hash")
    if not isinstance(template, str):
        # Several named templates: hash them in a fixed order.
        template = json.dumps(template, sort_keys=True)
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:12]


def encode_conversation(
    conv: Conversation, tokenizer, max_length: int | None = None
) -> EncodedDialogue:
    """Render ``conv`` with the chat template, tokenise it and label its assistant turns.

    Steps:
        1. Render the whole conversation as text, and for each assistant message ``i``
           the prefixes ``messages[:i]`` (with the generation prompt: where message ``i``
           starts) and ``messages[:i+1]`` (where it ends).
        2. Locate the message's content inside that segment.
        3. Tokenise the full text once with offsets (no extra special tokens: templates
           write their own BOS) and map character spans to tokens. A token belongs to the
           content if its span overlaps the content; the end-of-turn tokens follow it up
           to and including the first special token of the segment.

    Truncation: if ``max_length`` is set and the sequence is longer, it is cut right after
    the end-of-turn token of the last assistant turn that fits whole; later turns are
    removed entirely, so ``labels``, ``turn_index``, ``corruption`` and
    ``context_corrupted`` stay in step. If even the first assistant turn does not fit,
    :class:`TruncationError` is raised.

    Raises:
        EncodeError: the conversation has no assistant message.
        TemplateError: the template renders prefixes inconsistently, drops or alters an
            assistant message's content, or writes no special token after it.
        TruncationError: see above.

    Notes:
        Templates that render earlier turns differently once later turns follow (for
        example ones that strip reasoning from all but the last assistant message) fail
        the prefix check and are refused rather than mislabelled. A token that straddles
        the start of the content and the template text before it is labelled as content.
        A conversation that opens with an assistant message is refused by templates that
        insert a default system prompt only in front of a non-empty conversation (ChatML
        as in SmolLM2), since the empty prefix then renders inconsistently.
    """
    if conv.num_assistant_turns == 0:
        raise EncodeError(f"conversation {conv.id!r} has no assistant message to train on")
    text = _render(tokenizer, conv, len(conv.messages), generation_prompt=False)
    spans = _assistant_spans(conv, tokenizer, text)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoding["input_ids"])
    offsets = [(int(s), int(e)) for s, e in encoding["offset_mapping"]]
    labels = [IGNORE_INDEX] * len(ids)
    turn_index = [NO_TURN] * len(ids)
    special = _special_ids(tokenizer)
    turn_ends = []
    for k, span in enumerate(spans):
        first, last = _turn_tokens(conv.id, k, span, ids, offsets, special)
        labels[first : last + 1] = ids[first : last + 1]
        turn_index[first : last + 1] = [k] * (last + 1 - first)
        turn_ends.append(last + 1)
    kept, length = _truncate(conv.id, turn_ends, len(ids), max_length)
    turns = conv.assistant_turns[:kept]
    return EncodedDialogue(
        input_ids=ids[:length],
        labels=labels[:length],
        turn_index=turn_index[:length],
        sample_id=conv.id,
        corruption=tuple(m.meta.get("corruption") for m in turns),
        context_corrupted=tuple(bool(m.meta.get("context_corrupted", False)) for m in turns),
    )


def encode_many(
    convs: Iterable[Conversation],
    tokenizer,
    max_length: int | None = None,
    policy: Policy = "error",
) -> EncodeResult:
    """Encode every conversation; with ``policy="skip"`` leave out those that fail.

    Under ``"skip"`` every :class:`EncodeError` (truncation, template problem, no
    assistant message) is recorded in ``skipped`` with its message and counted in a
    warning; under ``"error"`` the first one is raised.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    encoded: list[EncodedDialogue] = []
    skipped: list[SkippedSample] = []
    kinds: Counter[str] = Counter()
    for conv in convs:
        try:
            encoded.append(encode_conversation(conv, tokenizer, max_length))
        except EncodeError as exc:
            if policy == "error":
                raise
            skipped.append(SkippedSample(conv.id, str(exc)))
            kinds[type(exc).__name__] += 1
    if skipped:
        logger.warning(
            "skipped %d of %d conversations (%s)",
            len(skipped),
            len(skipped) + len(encoded),
            ", ".join(f"{name}: {n}" for name, n in sorted(kinds.items())),
        )
    logger.info("encoded %d conversations (max_length=%s)", len(encoded), max_length)
    return EncodeResult(encoded=encoded, skipped=skipped)


def _render(tokenizer, conv: Conversation, n: int, generation_prompt: bool) -> str:
    """The chat template applied to ``conv.messages[:n]`` as text."""
    try:
        return tokenizer.apply_chat_template(
            conv.chat()[:n], tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as exc:
        raise TemplateError(
            f"conversation {conv.id!r}: the chat template failed on its first {n} "
            f"messages: {exc}"
        ) from exc


def _assistant_spans(conv: Conversation, tokenizer, text: str) -> list[_TurnSpan]:
    """Character spans of every assistant message's content in ``text``."""
    spans = []
    for i, message in enumerate(conv.messages):
        if message.role != "assistant":
            continue
        head = _render(tokenizer, conv, i, generation_prompt=True)
        upto = _render(tokenizer, conv, i + 1, generation_prompt=False)
        for prefix in (head, upto):
            if not text.startswith(prefix):
                raise TemplateError(
                    f"conversation {conv.id!r}: the chat template renders the messages "
                    f"before or up to assistant message {i} differently from the start of "
                    "the whole conversation; turns cannot be located"
                )
        start = _locate(text, message.content, len(head), len(upto))
        if start is None:
            raise TemplateError(
                f"conversation {conv.id!r}: the chat template drops or alters the content "
                f"of assistant message {i}; it cannot be found in its rendering "
                f"{text[len(head) : len(upto)]!r}"
            )
        spans.append(_TurnSpan(start[0], start[1], len(upto)))
    return spans


def _locate(text: str, content: str, lo: int, hi: int) -> tuple[int, int] | None:
    """Span of ``content`` (as given, else stripped) within ``text[lo:hi]``, or None."""
    for needle in (content, content.strip()):
        pos = text.find(needle, lo, hi)
        if pos >= 0:
            return pos, pos + len(needle)
    return None


def _special_ids(tokenizer) -> frozenset[int]:
    """Ids of the tokenizer's special tokens and of added tokens marked special."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    marked = {i for i, tok in added.items() if getattr(tok, "special", False)}
    return frozenset(tokenizer.all_special_ids) | marked


def _turn_tokens(
    conv_id: str,
    k: int,
    span: _TurnSpan,
    ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    special: frozenset[int],
) -> tuple[int, int]:
    """Index of the first and last labelled token of assistant turn ``k``."""
    # Content: tokens overlapping [content_start, content_end), so the first one is the
    # first token ending after content_start (offsets are in text order).
    first = bisect.bisect_right([end for _, end in offsets], span.content_start)
    # End-of-turn: after the content, up to the first special token of the segment. Special
    # tokens inside the content itself are content, not the end of the turn.
    for j in range(first, len(ids)):
        start = offsets[j][0]
        if start >= span.segment_end:
            break
        if start >= span.content_end and ids[j] in special:
            return first, j
    raise TemplateError(
        f"conversation {conv_id!r}: the chat template writes no special end-of-turn token "
        f"after assistant turn {k}, so the model could not learn to stop"
    )


def _truncate(
    conv_id: str, turn_ends: list[int], length: int, max_length: int | None
) -> tuple[int, int]:
    """(assistant turns kept, tokens kept) under the truncation rule."""
    if max_length is None or length <= max_length:
        return len(turn_ends), length
    kept = bisect.bisect_right(turn_ends, max_length)
    if kept == 0:
        raise TruncationError(
            f"conversation {conv_id!r}: its first assistant turn ends at token "
            f"{turn_ends[0]} > max_length={max_length}"
        )
    return kept, turn_ends[kept - 1]
