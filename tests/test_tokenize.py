"""Tests for resure.tokenize on ChatML, Llama 3 and Gemma chat templates."""

from __future__ import annotations

import copy
import logging
import re

import pytest

from resure.conversation import Conversation, Message
from resure.tokenize import (
    EncodeError,
    TemplateError,
    TruncationError,
    chat_template_hash,
    encode_conversation,
    encode_many,
)

ASSISTANT_TEXTS = [
    "The capital of France is Paris.",
    "Sure, what subject is it about?",
    "I like to play football with my friends.",
    "Sorry, I cannot help with that request.",
]
USER_TEXTS = [
    "What is the capital of France?",
    "Can you help me with my homework?",
    "What do you do on weekends?",
    "Tell me a story about a dragon.",
]


def make_conv(
    n_turns: int, system: str | None = None, conv_id: str = "c0", trailing_user: bool = False
) -> Conversation:
    """A dialogue alternating user/assistant with ``n_turns`` assistant messages."""
    msgs = [Message("system", system)] if system else []
    for k in range(n_turns):
        msgs.append(Message("user", USER_TEXTS[k % 4]))
        meta = {"corruption": "swap"} if k == 1 else {}
        if k > 1:
            meta = {"context_corrupted": True}
        msgs.append(Message("assistant", ASSISTANT_TEXTS[k % 4], meta))
    if trailing_user:
        msgs.append(Message("user", "Thank you very much."))
    return Conversation(id=conv_id, messages=tuple(msgs))


def with_template(tokenizer, template: str | None):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def turn_text(tokenizer, enc, k: int) -> str:
    ids = [i for i, t in zip(enc.input_ids, enc.turn_index, strict=True) if t == k]
    return tokenizer.decode(ids, skip_special_tokens=False)


def template_ids(tokenizer, conv: Conversation) -> list[int]:
    out = tokenizer.apply_chat_template(conv.chat(), tokenize=True, return_dict=True)
    return list(out["input_ids"])


def test_trim_detection_matches_families(any_tokenizer):
    # Sanity check of the fixture: the llama3 and gemma templates trim, chatml does not.
    trims = "trim" in any_tokenizer.chat_template
    assert trims == (any_tokenizer.eos_token != "<|im_end|>")


@pytest.mark.parametrize("n_turns", [1, 2, 3, 4])
@pytest.mark.parametrize("system", [None, "You are a helpful assistant."])
def test_labels_are_assistant_content_plus_end_token(any_tokenizer, n_turns, system):
    conv = make_conv(n_turns, system=system, trailing_user=n_turns == 2)
    enc = encode_conversation(conv, any_tokenizer)

    assert enc.input_ids == template_ids(any_tokenizer, conv)
    assert enc.num_turns == n_turns
    assert len(enc.labels) == len(enc.turn_index) == len(enc.input_ids)
    for k in range(n_turns):
        assert turn_text(any_tokenizer, enc, k) == ASSISTANT_TEXTS[k] + any_tokenizer.eos_token
    for tok, lab, idx in zip(enc.input_ids, enc.labels, enc.turn_index, strict=True):
        assert (lab == tok) if idx >= 0 else (lab == -100 and idx == -1)
    # Each turn's tokens form one contiguous run, in order.
    runs = [t for i, t in enumerate(enc.turn_index) if t >= 0 and enc.turn_index[i - 1] != t]
    assert runs == list(range(n_turns))


def test_system_and_user_text_never_labelled(any_tokenizer):
    conv = make_conv(3, system="You are a helpful assistant.", trailing_user=True)
    enc = encode_conversation(conv, any_tokenizer)
    # Blank out labelled tokens; every system/user text survives in what is left.
    unlabelled = [
        tok if lab == -100 else any_tokenizer.eos_token_id
        for tok, lab in zip(enc.input_ids, enc.labels, strict=True)
    ]
    rest = any_tokenizer.decode(unlabelled, skip_special_tokens=False)
    labelled = any_tokenizer.decode([lab for lab in enc.labels if lab != -100])
    for message in conv.messages:
        if message.role != "assistant":
            assert message.content in rest
            assert message.content not in labelled
        else:
            assert message.content not in rest


def test_corruption_meta_per_turn(any_tokenizer):
    enc = encode_conversation(make_conv(4), any_tokenizer)
    assert enc.corruption == (None, "swap", None, None)
    assert enc.context_corrupted == (False, False, True, True)
    assert enc.sample_id == "c0"


def test_whitespace_around_content(any_tokenizer):
    conv = Conversation(
        id="ws",
        messages=(Message("user", "Hello"), Message("assistant", "  Paris is nice.  ")),
    )
    enc = encode_conversation(conv, any_tokenizer)
    content = conv.messages[1].content
    if "trim" in any_tokenizer.chat_template:
        content = content.strip()
    assert turn_text(any_tokenizer, enc, 0) == content + any_tokenizer.eos_token
    assert enc.input_ids == template_ids(any_tokenizer, conv)


def test_empty_assistant_content_labels_only_end_token(any_tokenizer):
    conv = Conversation(id="e", messages=(Message("user", "Hello"), Message("assistant", "")))
    enc = encode_conversation(conv, any_tokenizer)
    assert [lab for lab in enc.labels if lab != -100] == [any_tokenizer.eos_token_id]


def test_content_repeating_user_text_is_labelled_at_its_own_place(any_tokenizer):
    # The assistant echoes the user's words: the label must sit on the assistant message.
    conv = Conversation(
        id="echo",
        messages=(
            Message("user", "Paris"),
            Message("assistant", "Paris"),
            Message("user", "Paris"),
            Message("assistant", "Paris"),
        ),
    )
    enc = encode_conversation(conv, any_tokenizer)
    for k, i in enumerate((1, 3)):
        assert turn_text(any_tokenizer, enc, k) == "Paris" + any_tokenizer.eos_token
        # Everything before turn k is exactly the prompt that asks for message i.
        first = enc.turn_index.index(k)
        head = any_tokenizer.apply_chat_template(
            conv.chat()[:i], tokenize=False, add_generation_prompt=True
        )
        assert any_tokenizer.decode(enc.input_ids[:first], skip_special_tokens=False) == head


def test_truncation_keeps_turns_in_step(any_tokenizer):
    conv = make_conv(4, system="You are a helpful assistant.")
    full = encode_conversation(conv, any_tokenizer)
    ends = [max(i for i, t in enumerate(full.turn_index) if t == k) + 1 for k in range(4)]
    for max_length in range(1, len(full) + 3):
        if max_length < ends[0]:
            with pytest.raises(TruncationError, match="'c0'.*max_length"):
                encode_conversation(conv, any_tokenizer, max_length=max_length)
            continue
        enc = encode_conversation(conv, any_tokenizer, max_length=max_length)
        kept = sum(end <= max_length for end in ends) if max_length < len(full) else 4
        assert len(enc) <= max_length
        assert enc.num_turns == kept
        assert len(enc) == (ends[kept - 1] if max_length < len(full) else len(full))
        assert enc.input_ids == full.input_ids[: len(enc)]
        assert enc.labels == full.labels[: len(enc)]
        assert enc.turn_index == full.turn_index[: len(enc)]
        assert sorted(set(enc.turn_index) - {-1}) == list(range(kept))
        assert enc.corruption == full.corruption[:kept]
        assert enc.context_corrupted == full.context_corrupted[:kept]
        if max_length < len(full):
            # Cut right after the end-of-turn token of the last kept turn.
            assert enc.labels[-1] == any_tokenizer.eos_token_id


def test_truncation_error_is_value_error(chatml_tokenizer):
    conv = make_conv(1, conv_id="long-one")
    with pytest.raises(ValueError, match="'long-one'"):
        encode_conversation(conv, chatml_tokenizer, max_length=3)


def test_no_assistant_message(chatml_tokenizer):
    conv = Conversation(id="u", messages=(Message("user", "Hello"),))
    with pytest.raises(EncodeError, match="'u' has no assistant message"):
        encode_conversation(conv, chatml_tokenizer)


def test_template_dropping_assistant_content(chatml_tokenizer):
    tok = with_template(
        chatml_tokenizer,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role != 'assistant' %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    with pytest.raises(TemplateError, match="'c0'.*drops or alters the content"):
        encode_conversation(make_conv(1), tok)


def test_template_without_end_token(chatml_tokenizer):
    tok = with_template(
        chatml_tokenizer,
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}",
    )
    with pytest.raises(TemplateError, match="no special end-of-turn token after assistant"):
        encode_conversation(make_conv(2), tok)


def test_template_rendering_prefixes_inconsistently(chatml_tokenizer):
    tok = with_template(
        chatml_tokenizer,
        "{{ messages | length }}{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    with pytest.raises(TemplateError, match="'c0'.*differently from the start"):
        encode_conversation(make_conv(1), tok)


def test_assistant_first_with_default_system_prompt_is_refused(chatml_tokenizer):
    conv = Conversation(id="a1", messages=(Message("assistant", "Hello"),))
    with pytest.raises(TemplateError, match="'a1'"):
        encode_conversation(conv, chatml_tokenizer)


def test_missing_chat_template(chatml_tokenizer):
    tok = with_template(chatml_tokenizer, None)
    with pytest.raises(TemplateError, match="'c0'.*chat template failed"):
        encode_conversation(make_conv(1), tok)
    with pytest.raises(ValueError, match="no chat template"):
        chat_template_hash(tok)


def test_special_token_inside_content_is_content(chatml_tokenizer):
    conv = Conversation(
        id="sp",
        messages=(Message("user", "Hi"), Message("assistant", "a<|endoftext|>b")),
    )
    enc = encode_conversation(conv, chatml_tokenizer)
    assert turn_text(chatml_tokenizer, enc, 0) == "a<|endoftext|>b<|im_end|>"


def test_encode_many_policies(chatml_tokenizer, caplog):
    long_system = " ".join(USER_TEXTS)
    convs = [
        make_conv(1, system=long_system, conv_id="a"),
        make_conv(2, system=long_system, conv_id="b"),
        make_conv(3, conv_id="c"),
    ]
    # Room for c's first turn, but not for a's or b's after their long system prompt.
    c_turns = encode_conversation(convs[2], chatml_tokenizer).turn_index
    max_length = max(i for i, t in enumerate(c_turns) if t == 0) + 1
    with pytest.raises(TruncationError, match="'a'"):
        encode_many(convs, chatml_tokenizer, max_length=20)
    with caplog.at_level(logging.WARNING, logger="resure.tokenize"):
        result = encode_many(convs, chatml_tokenizer, max_length=max_length, policy="skip")
    assert [s.sample_id for s in result.skipped] == ["a", "b"]
    assert all("max_length" in s.reason for s in result.skipped)
    assert [(e.sample_id, e.num_turns) for e in result.encoded] == [("c", 1)]
    assert "skipped 2 of 3 conversations (TruncationError: 2)" in caplog.text
    assert encode_many(convs, chatml_tokenizer).skipped == []
    with pytest.raises(ValueError, match="unknown policy 'drop'"):
        encode_many(convs, chatml_tokenizer, policy="drop")


def test_chat_template_hash(any_tokenizer, chatml_tokenizer):
    h = chat_template_hash(any_tokenizer)
    assert re.fullmatch(r"[0-9a-f]{12}", h)
    assert h == chat_template_hash(copy.deepcopy(any_tokenizer))
    assert (h == chat_template_hash(chatml_tokenizer)) == (
        any_tokenizer.chat_template == chatml_tokenizer.chat_template
    )


@pytest.mark.integration
def test_smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
    conv = make_conv(3, trailing_user=True)
    enc = encode_conversation(conv, tok)
    assert enc.input_ids == template_ids(tok, conv)
    for k in range(3):
        assert turn_text(tok, enc, k) == ASSISTANT_TEXTS[k] + "<|im_end|>"
    assert len(chat_template_hash(tok)) == 12
    # A content opening with newlines merges with the header's newline into one token,
    # which is labelled as content (documented straddling rule).
    conv = Conversation("nl", (Message("user", "Hi"), Message("assistant", "\n\nHello there")))
    enc = encode_conversation(conv, tok)
    assert enc.input_ids == template_ids(tok, conv)
    assert turn_text(tok, enc, 0) == "\n\n\nHello there<|im_end|>"
