"""The chitchat sources: mapping rules on a small fixture, and the real package's split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import resure.data.chitchat as chitchat
from resure.conversation import Message
from resure.data import DataError, chitchat_split, load_conversations

ASSETS = Path(__file__).parent / "assets" / "data"


@pytest.fixture
def small_chitchat(monkeypatch):
    """Replace the package's dialogues by tests/assets/data/chitchat_small.json."""
    data = json.loads((ASSETS / "chitchat_small.json").read_text(encoding="utf-8"))
    monkeypatch.setattr(chitchat, "_dataset", lambda: data)
    return data


# ---- mapping, on the fixture ---------------------------------------------------------


def test_blocks_become_alternating_messages(small_chitchat):
    result = load_conversations("chitchat", policy="skip")
    assert result.format == "chitchat"
    good, no_ratings = result.conversations
    assert good.id == "good"
    # The blank line of the first block carries no text and is left out of the join.
    assert good.messages == (Message("user", "Hi\nanyone?"), Message("assistant", "yes"))
    assert good.meta == {
        "split": chitchat_split("good"),
        "ratings": {"witty": 3, "upbeat": 4, "interesting": 5},
        "prompt": "Say hi",
        "start": "2018-05-01T10:00:00Z",
    }
    assert no_ratings.meta == {"split": chitchat_split("no-ratings"),
                               "start": "2018-05-01T11:00:00Z"}


def test_dialogues_breaking_rules_are_listed(small_chitchat):
    result = load_conversations("chitchat", policy="skip")
    assert [(p.record_id, p.rule, p.detail) for p in result.skipped] == [
        ("alone", "has-assistant", "dialogue has no assistant turn"),
        ("crowd", "two-speakers", "block 2 is from a third sender 'u8'"),
        ("mixed-block", "two-speakers", "block 0 mixes senders ['u10', 'u9']"),
        ("blank-block", "content-nonempty", "message 1 (assistant) has empty content"),
    ]
    assert result.num_records == len(small_chitchat)


def test_error_policy_names_the_dialogue(small_chitchat):
    with pytest.raises(DataError, match=r"chitchat\[alone\] \(id=alone\): rule "
                       "'has-assistant'"):
        load_conversations("chitchat")


def test_unknown_chitchat_split():
    with pytest.raises(DataError, match=r"chitchat:test: rule 'source': unknown chitchat "
                       "source; use one of chitchat, chitchat:train, chitchat:heldout"):
        load_conversations("chitchat:test")


def test_chitchat_source_refuses_file_format():
    with pytest.raises(DataError, match="chitchat has format 'chitchat', not 'openai'"):
        load_conversations("chitchat", format="openai")


# ---- the split -----------------------------------------------------------------------


def test_split_is_a_fixed_hash_of_the_id():
    # Pinned: these values must never change, or trained models would see held-out data.
    assert chitchat_split("f8821352-c011-47ef-88cd-18355b2eb3c6") == "heldout"
    assert chitchat_split("a07edb12-6b91-4138-b11e-02421888d699") == "train"
    for conv_id in ("x", "46c4eecb-8270-49e7-a8eb-c48a23b7c0c0", "é"):
        bucket = int(hashlib.sha256(conv_id.encode()).hexdigest()[:16], 16) % 100
        assert chitchat_split(conv_id) == ("heldout" if bucket < 5 else "train")


# ---- the real package ----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_sources():
    return {s: load_conversations(s, policy="skip")
            for s in ("chitchat", "chitchat:train", "chitchat:heldout")}


def test_real_package_counts(real_sources):
    full, train, heldout = real_sources.values()
    assert full.num_records == 7168
    assert (train.num_records, heldout.num_records) == (6791, 377)
    assert len(full.conversations) == len(train.conversations) + len(heldout.conversations)
    # Every dialogue is accounted for: loaded or listed with its rule.
    assert len(full.conversations) + len(full.skipped) == 7168
    assert set(full.skipped_by_rule()) <= {"has-assistant", "ends-with-assistant",
                                           "content-nonempty"}


def test_real_split_is_disjoint_and_matches_meta(real_sources):
    full, train, heldout = real_sources.values()
    train_ids = {c.id for c in train.conversations} | {p.record_id for p in train.skipped}
    heldout_ids = {c.id for c in heldout.conversations} | {p.record_id for p in heldout.skipped}
    assert not train_ids & heldout_ids
    assert len(train_ids | heldout_ids) == 7168
    assert all(c.meta["split"] == "heldout" for c in heldout.conversations)
    assert all(c.meta["split"] == "train" for c in train.conversations)
    assert 0.04 < len(heldout_ids) / 7168 < 0.06


def test_real_known_dialogues(real_sources):
    by_id = {c.id: c for c in real_sources["chitchat"].conversations}
    conv = by_id["46c4eecb-8270-49e7-a8eb-c48a23b7c0c0"]
    assert conv.chat() == [
        {"role": "user", "content": "Hello?\nYou here?"},
        {"role": "assistant", "content": "yep\nwhat's up?\nare you?"},
    ]
    assert conv.meta == {
        "split": "train",
        "ratings": {"upbeat": 5, "witty": 5, "interesting": 5},
        "prompt": "What's your secret superpower? (i.e. What are you really really good at.)",
        "start": "2018-04-15T03:44:32Z",
    }
    # No ratings, no prompt, and a blank second line in the assistant's block.
    bare = by_id["4228ef8b-fc10-44e2-a3bd-bde7cd782607"]
    assert bare.chat() == [
        {"role": "user", "content": "is anyone there?"},
        {"role": "assistant", "content": "Whats up"},
    ]
    assert bare.meta == {"split": "train", "start": "2018-04-10T21:39:24Z"}


def test_unanswered_final_user_block_is_dropped_and_recorded():
    def line(sender, text):
        return {"text": text, "sender": sender, "timestamp": "t"}

    record = {
        "messages": [[line("a", "hi")], [line("b", "hello")], [line("a", "bye?")]],
        "start": "s",
    }
    conv = chitchat.map_chitchat(record, "x")
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    assert conv.meta["unanswered_user_block_dropped"] is True
    # A dialogue that ends with the assistant keeps everything and carries no such flag.
    answered = chitchat.map_chitchat({"messages": record["messages"][:2]}, "y")
    assert len(answered.messages) == 2
    assert "unanswered_user_block_dropped" not in answered.meta
