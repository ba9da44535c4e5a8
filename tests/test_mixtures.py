"""Quality mixtures: rates, labels, nesting and determinism."""

from __future__ import annotations

import pytest

from resure.conversation import Conversation, Message
from resure.sweep.mixtures import (
    BOILERPLATE,
    KIND_ORDER,
    OFF_DOMAIN,
    allocate,
    corrupt,
    corruption_stats,
    draw_pool,
    nested_subsets,
    trim_dialogue,
)

ALL_KINDS = [(k, 1.0) for k in KIND_ORDER]


def dialogue(i: int, turns: int = 3, source: str = "a") -> Conversation:
    msgs = []
    for t in range(turns):
        msgs.append(Message("user", f"{source} question {i}.{t} about topic {i}"))
        msgs.append(Message("assistant", f"{source} answer {i}.{t}: a sentence of several "
                                         f"words about topic {i} and turn {t}"))
    return Conversation(f"{source}{i}", tuple(msgs))


def pool_of(n: int, turns: int = 3) -> list[Conversation]:
    return [dialogue(i, turns) for i in range(n)]


def test_allocate_is_exact_and_proportional():
    assert allocate(10, [0.5, 0.3, 0.2]) == [5, 3, 2]
    assert sum(allocate(7, [1 / 3] * 3)) == 7
    assert allocate(0, [0.5, 0.5]) == [0, 0]


@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_rate_on_pool_is_exact_and_kinds_follow_weights(fraction):
    pool = pool_of(100)  # 300 assistant turns
    weights = [("truncate", 1.0), ("noise", 1.0), ("repetition", 2.0)]
    result = corrupt(pool, fraction, weights, seed=1)
    target = round(fraction * 300)
    assert result.num_turns == 300
    assert result.num_corrupted == target
    assert result.counts == dict(zip(["truncate", "noise", "repetition"],
                                     allocate(target, [0.25, 0.25, 0.5]), strict=True))
    stats = corruption_stats(result.conversations)
    assert stats.corrupted_turns == target and stats.by_kind == result.counts


def test_every_kind_is_applied_and_rates_hold_on_prefixes():
    pool = pool_of(400)
    result = corrupt(pool, 0.6, ALL_KINDS, seed=3)
    assert set(result.counts) == set(KIND_ORDER)
    assert result.rate == pytest.approx(0.6, abs=0.002)
    for n, prefix in nested_subsets(result.conversations, [50, 100, 200, 400]).items():
        # Turns are chosen uniformly over the pool, so each prefix is close to the rate.
        assert corruption_stats(prefix).rate == pytest.approx(0.6, abs=0.12), n


def test_labels_corrupted_turn_and_every_later_message():
    result = corrupt(pool_of(60, turns=4), 0.3, ALL_KINDS, seed=5)
    checked = 0
    for conv in result.conversations:
        first = next((i for i, m in enumerate(conv.messages) if "corruption" in m.meta), None)
        for i, m in enumerate(conv.messages):
            if first is None or i <= first:
                assert "context_corrupted" not in m.meta
            else:
                assert m.meta["context_corrupted"] is True
                checked += 1
            if "corruption" in m.meta:
                assert m.role == "assistant" and m.meta["corruption"] in KIND_ORDER
    assert checked > 0


def test_corruptions_change_the_text_as_described():
    pool = pool_of(80)
    originals = {(c.id, i): m.content for c in pool for i, m in enumerate(c.messages)}
    result = corrupt(pool, 0.6, ALL_KINDS, seed=7)
    by_id = {c.id: c for c in pool}
    for conv in result.conversations:
        own = [m.content for m in by_id[conv.id].messages if m.role == "assistant"]
        for i, m in enumerate(conv.messages):
            kind = m.meta.get("corruption")
            original = originals[(conv.id, i)]
            if kind is None:
                assert m.content == original
            elif kind == "truncate":
                assert original.startswith(m.content) and len(m.content) < len(original)
            elif kind == "boilerplate":
                assert m.content in BOILERPLATE
            elif kind == "off_domain":
                assert m.content in OFF_DOMAIN
            elif kind in ("swap", "cascade"):
                # from another dialogue: "a answer <i>.<t>: ..." with another i
                assert m.content.split()[2].split(".")[0] != conv.id[1:]
            elif kind == "shuffle":
                assert m.content in own and m.content != original
            elif kind == "repetition":
                words = m.content.split()
                assert len(words) >= 6 and len(set(words)) <= 3
            elif kind == "noise":
                assert m.content != original
    cascades = [(c, i) for c in result.conversations for i, m in enumerate(c.messages)
                if m.meta.get("corruption") == "cascade"]
    assert cascades and all(i == 1 for _, i in cascades)  # first assistant turn


def test_determinism_and_seed_dependence():
    pool = pool_of(50)
    a = corrupt(pool, 0.3, ALL_KINDS, seed=11)
    b = corrupt(pool, 0.3, ALL_KINDS, seed=11)
    c = corrupt(pool, 0.3, ALL_KINDS, seed=12)
    assert [x.to_dict() for x in a.conversations] == [x.to_dict() for x in b.conversations]
    assert [x.to_dict() for x in a.conversations] != [x.to_dict() for x in c.conversations]


def test_pool_is_prefix_stable_and_keeps_source_shares():
    sources = {"a": [dialogue(i, source="a") for i in range(300)],
               "b": [dialogue(i, source="b") for i in range(300)]}
    shares = [("a", 0.75), ("b", 0.25)]
    big = draw_pool(sources, shares, 200, seed=4)
    small = draw_pool(sources, shares, 64, seed=4)
    assert [c.id for c in small] == [c.id for c in big[:64]]
    for n in (8, 64, 200):
        share_a = sum(c.id.startswith("a") for c in big[:n]) / n
        assert abs(share_a - 0.75) <= 1 / n
    assert len({c.id for c in big}) == 200
    other = draw_pool(sources, shares, 200, seed=5)
    assert [c.id for c in other] != [c.id for c in big]


def test_fit_is_applied_lazily_and_keeps_prefix_stability():
    sources = {"a": [dialogue(i, turns=1 + i % 3) for i in range(200)]}
    calls = []

    def fit(conv):
        calls.append(conv.id)
        return trim_dialogue(conv, 1) if conv.num_assistant_turns >= 2 else None

    pool = draw_pool(sources, [("a", 1.0)], 20, seed=1, fit=fit)
    assert len(pool) == 20 and all(c.num_assistant_turns == 1 for c in pool)
    assert len(calls) < 60  # stops once 20 usable dialogues were found
    smaller = draw_pool(sources, [("a", 1.0)], 8, seed=1, fit=fit)
    assert [c.id for c in smaller] == [c.id for c in pool[:8]]
    with pytest.raises(ValueError, match=r"has 133 usable dialogues \(of 200\)"):
        draw_pool(sources, [("a", 1.0)], 150, seed=1, fit=fit)


def test_nested_subsets_share_their_corruptions():
    pool = draw_pool({"a": pool_of(500)}, [("a", 1.0)], 128, seed=0)
    corrupted = corrupt(pool, 0.3, ALL_KINDS, seed=0).conversations
    subsets = nested_subsets(corrupted, [16, 32, 64, 128])
    for small, large in [(16, 32), (32, 64), (64, 128)]:
        assert [c.to_dict() for c in subsets[small]] == [
            c.to_dict() for c in subsets[large][:small]]


def test_too_small_source_and_pool_are_refused():
    with pytest.raises(ValueError, match=r"source 'a' has 3 usable dialogues \(of 3\); the "
                                         r"mixture needs 10 of a pool of 10"):
        draw_pool({"a": pool_of(3)}, [("a", 1.0)], 10, seed=0)
    with pytest.raises(ValueError, match=r"size 20 exceeds the pool of 10"):
        nested_subsets(pool_of(10), [5, 20])
    with pytest.raises(ValueError, match=r"unknown corruption kind\(s\) \['swapp'\]"):
        corrupt(pool_of(3), 0.3, [("swapp", 1.0)], seed=0)
    with pytest.raises(ValueError, match=r"corrupt fraction must be in \[0, 1\)"):
        corrupt(pool_of(3), 1.0, ALL_KINDS, seed=0)


def test_shortfall_of_constrained_kind_passes_on(caplog):
    # Single-turn dialogues: no cascade or shuffle is possible; the count moves on.
    pool = pool_of(40, turns=1)
    result = corrupt(pool, 0.5, [("cascade", 1.0), ("shuffle", 1.0), ("noise", 1.0)], seed=0)
    assert result.num_corrupted == 20
    assert result.counts == {"noise": 20}
    assert "only 0 of 7 turns eligible" in caplog.text


def test_trim_dialogue_keeps_whole_turns():
    conv = dialogue(0, turns=4)
    trimmed = trim_dialogue(conv, 2)
    assert trimmed.num_assistant_turns == 2 and trimmed.messages[-1].role == "assistant"
    assert trimmed.messages == conv.messages[:4]
    assert trim_dialogue(conv, None) is conv and trim_dialogue(conv, 9) is conv
