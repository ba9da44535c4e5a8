"""Tests for resure.losses against plain loops, F.cross_entropy and the model's own loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, LlamaForCausalLM

from resure.conversation import Conversation, Message
from resure.losses import (
    TurnLosses,
    shift_turn_index,
    token_losses,
    turn_losses,
    weighted_loss,
)
from resure.tokenize import encode_conversation


def random_layout(gen: torch.Generator, b: int, t: int, max_turns: int):
    """Random [B, T] turn index: runs of turns separated by -1, some rows without turns."""
    index = torch.full((b, t), -1, dtype=torch.long)
    for row in range(b):
        n = int(torch.randint(0, max_turns + 1, (1,), generator=gen))
        pos = 0
        for k in range(n):
            pos += int(torch.randint(0, 3, (1,), generator=gen))
            length = int(torch.randint(1, 4, (1,), generator=gen))
            if pos >= t:
                break
            index[row, pos : pos + length] = k
            pos += length
    return index


def loop_reference(token_loss, turn_index, k: int):
    """Per (b, k) sums and counts with Python loops (float64)."""
    b, t = token_loss.shape
    sums = [[0.0] * k for _ in range(b)]
    counts = [[0] * k for _ in range(b)]
    for row in range(b):
        for pos in range(t):
            turn = int(turn_index[row, pos])
            if turn >= 0:
                sums[row][turn] += float(token_loss[row, pos])
                counts[row][turn] += 1
    return torch.tensor(sums, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64)


def test_token_losses_match_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 11, (3, 7), generator=gen)
    labels[0, :4] = -100
    labels[2, :] = -100  # an all-ignored row
    out = token_losses(logits, labels)
    assert out.shape == (3, 6) and out.dtype == torch.float32
    for b in range(3):
        for t in range(6):
            target = labels[b, t + 1]
            expected = 0.0 if target == -100 else float(F.cross_entropy(logits[b, t], target))
            assert float(out[b, t]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert torch.all(out[2] == 0)


def test_token_losses_half_precision_computed_in_float32():
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 5, 9, generator=gen) * 20).to(torch.bfloat16)
    labels = torch.randint(0, 9, (2, 5), generator=gen)
    out = token_losses(logits, labels)
    expected = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, 9), labels[:, 1:].reshape(-1), reduction="none"
    )
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.reshape(-1), expected, rtol=0, atol=0)


def test_token_losses_shape_check():
    with pytest.raises(ValueError, match=r"logits \[B, S, V\] and labels \[B, S\]"):
        token_losses(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_shift_turn_index_aligns_with_labels():
    labels = torch.tensor([[-100, -100, 5, 6, -100, 7]])
    turn_index = torch.tensor([[-1, -1, 0, 0, -1, 1]])
    shifted = shift_turn_index(turn_index)
    assert shifted.shape == (1, 5)
    assert torch.equal(shifted >= 0, labels[:, 1:] != -100)


@pytest.mark.parametrize("seed", range(8))
def test_turn_losses_match_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    b, t = 5, 17
    turn_index = random_layout(gen, b, t, max_turns=4)
    token_loss = torch.rand(b, t, generator=gen, dtype=torch.float64) * (turn_index >= 0)
    k = max(int(turn_index.max()) + 1, 1)
    turns = turn_losses(token_loss, turn_index)
    sums, counts = loop_reference(token_loss, turn_index, k)
    assert turns.sums.shape == (b, k)
    torch.testing.assert_close(turns.sums, sums)
    torch.testing.assert_close(turns.tokens, counts)
    assert torch.equal(turns.present, counts > 0)
    means = torch.where(counts > 0, sums / counts.clamp(min=1), 0.0)
    torch.testing.assert_close(turns.means, means)


def test_turn_losses_absent_turns_and_explicit_k():
    token_loss = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    turn_index = torch.tensor([[-1, 0, 0, 2], [-1, -1, -1, -1]])
    turns = turn_losses(token_loss, turn_index, num_turns=4)
    torch.testing.assert_close(turns.sums, torch.tensor([[5.0, 0, 4, 0], [0, 0, 0, 0]]))
    torch.testing.assert_close(turns.tokens, torch.tensor([[2.0, 0, 1, 0], [0, 0, 0, 0]]))
    torch.testing.assert_close(turns.means, torch.tensor([[2.5, 0, 4, 0], [0, 0, 0, 0]]))
    assert turns.present.tolist() == [[True, False, True, False], [False] * 4]


def test_turn_losses_no_turns_gives_one_column():
    turns = turn_losses(torch.ones(2, 3), torch.full((2, 3), -1))
    assert turns.sums.shape == (2, 1)
    assert not turns.present.any()


def test_turn_losses_validation():
    with pytest.raises(ValueError, match="num_turns=2 does not cover turn index 2"):
        turn_losses(torch.ones(1, 3), torch.tensor([[0, 1, 2]]), num_turns=2)
    with pytest.raises(ValueError, match="same \\[B, T\\] shape"):
        turn_losses(torch.ones(1, 3), torch.tensor([[0, 1]]))


def test_gradients_flow_only_through_sums():
    gen = torch.Generator().manual_seed(3)
    token_loss = torch.rand(3, 9, generator=gen, requires_grad=True)
    turn_index = random_layout(gen, 3, 9, max_turns=3)
    turns = turn_losses(token_loss, turn_index)
    assert turns.sums.requires_grad and turns.means.requires_grad
    assert not turns.tokens.requires_grad and not turns.present.requires_grad
    weights = torch.rand(turns.sums.shape, generator=gen, requires_grad=True)
    loss = weighted_loss(turns, weights)
    loss.backward()
    assert weights.grad is None  # weights are detached
    # d loss / d token_loss[b, t] = w[b, k(b, t)] / N for tokens in a turn, 0 elsewhere.
    n = (turn_index >= 0).sum()
    k = turn_index.clamp(min=0)
    expected = torch.where(turn_index >= 0, weights.detach().gather(1, k) / n, 0.0)
    torch.testing.assert_close(token_loss.grad, expected)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_loss_against_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    b, t = 4, 15
    turn_index = random_layout(gen, b, t, max_turns=3)
    turn_index[0, :3] = 0  # at least one supervised token
    token_loss = torch.rand(b, t, generator=gen, dtype=torch.float64)
    turns = turn_losses(token_loss, turn_index)
    weights = torch.rand(turns.sums.shape, generator=gen, dtype=torch.float64)
    num = den_tokens = den_weighted = 0.0
    for row in range(b):
        for pos in range(t):
            turn = int(turn_index[row, pos])
            if turn >= 0:
                w = float(weights[row, turn])
                num += w * float(token_loss[row, pos])
                den_tokens += 1
                den_weighted += w
    assert float(weighted_loss(turns, weights)) == pytest.approx(num / den_tokens)
    got = float(weighted_loss(turns, weights, normalize="weighted_tokens"))
    assert got == pytest.approx(num / den_weighted)
    got = float(weighted_loss(turns, weights, denominator=2 * den_tokens))
    assert got == pytest.approx(num / (2 * den_tokens))


def test_uniform_weights_equal_mean_cross_entropy():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 8, 13, generator=gen)
    turn_index = random_layout(gen, 3, 8, max_turns=3)
    turn_index[1, 2:4] = 0
    labels = torch.where(turn_index >= 0, torch.randint(0, 13, (3, 8), generator=gen), -100)
    turns = turn_losses(token_losses(logits, labels), shift_turn_index(turn_index))
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 13), labels[:, 1:].reshape(-1))
    for normalize in ("tokens", "weighted_tokens"):
        got = weighted_loss(turns, torch.ones_like(turns.sums), normalize=normalize)
        torch.testing.assert_close(got, expected)


def test_all_ignored_batch_returns_attached_zero():
    token_loss = torch.zeros(2, 5, requires_grad=True)
    for normalize in ("tokens", "weighted_tokens"):
        turns = turn_losses(token_loss, torch.full((2, 5), -1))
        loss = weighted_loss(turns, torch.ones_like(turns.sums), normalize=normalize)
        assert float(loss.detach()) == 0.0 and loss.requires_grad
        (grad,) = torch.autograd.grad(loss, token_loss)
        assert torch.all(grad == 0)


def test_all_zero_weights_weighted_tokens_returns_zero():
    token_loss = torch.rand(2, 4, requires_grad=True)
    turns = turn_losses(token_loss, torch.tensor([[0, 0, 1, 1], [-1, 0, 0, -1]]))
    loss = weighted_loss(turns, torch.zeros_like(turns.sums), normalize="weighted_tokens")
    assert float(loss.detach()) == 0.0 and not math.isnan(float(loss.detach()))
    loss.backward()
    assert torch.all(token_loss.grad == 0)


def test_weighted_loss_validation():
    turns = TurnLosses(*(torch.zeros(2, 3) for _ in range(3)), torch.zeros(2, 3, dtype=bool))
    with pytest.raises(ValueError, match=r"weights \(2, 2\) must have the shape"):
        weighted_loss(turns, torch.ones(2, 2))
    with pytest.raises(ValueError, match="unknown normalize 'mean'"):
        weighted_loss(turns, torch.ones(2, 3), normalize="mean")
    with pytest.raises(ValueError, match="denominator is only used"):
        weighted_loss(turns, torch.ones(2, 3), normalize="weighted_tokens", denominator=3)


def pad_batch(encoded, pad_id: int):
    """Right-pad encoded dialogues into [B, S] tensors."""
    s = max(len(e) for e in encoded)

    def pad(seq, value):
        return torch.tensor([list(x) + [value] * (s - len(x)) for x in seq])

    ids = pad([e.input_ids for e in encoded], pad_id)
    labels = pad([e.labels for e in encoded], -100)
    turn_index = pad([e.turn_index for e in encoded], -1)
    mask = pad([[1] * len(e) for e in encoded], 0)
    return ids, labels, turn_index, mask


def test_uniform_weights_equal_model_loss(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = LlamaForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    convs = [
        Conversation("a", (Message("user", "Hello"), Message("assistant", "I am fine."))),
        Conversation(
            "b",
            (
                Message("system", "You are a helpful assistant."),
                Message("user", "What is the capital of France?"),
                Message("assistant", "The capital of France is Paris."),
                Message("user", "Tell me a story."),
                Message("assistant", "A dragon learned to cook pasta at night."),
            ),
        ),
    ]
    encoded = [encode_conversation(c, tokenizer) for c in convs]
    ids, labels, turn_index, mask = pad_batch(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    turns = turn_losses(token_losses(out.logits, labels), shift_turn_index(turn_index))
    assert turns.present.tolist() == [[True, False], [True, True]]
    loss = weighted_loss(turns, turns.present.float())
    torch.testing.assert_close(loss, out.loss, rtol=1e-5, atol=1e-6)
    # Doubling the second turn of "b" is the same as counting its token losses twice.
    weights = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    doubled = (turns.sums.sum() + turns.sums[1, 1]) / turns.tokens.sum()
    torch.testing.assert_close(weighted_loss(turns, weights), doubled)
