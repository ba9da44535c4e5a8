"""Per-token, per-turn and weighted losses for multi-turn dialogue fine-tuning.

Alignment. A causal LM's logits at position ``t`` predict the token at ``t + 1``.
:func:`token_losses` therefore returns ``S - 1`` losses where entry ``t`` is the loss of
*label* ``t + 1``, and :func:`shift_turn_index` drops the first turn index so that entry
``t`` is the turn of that same label. Feed both shifted tensors to :func:`turn_losses`::

    tok = token_losses(logits, labels)                         # [B, S-1]
    turns = turn_losses(tok, shift_turn_index(turn_index))     # each [B, K]
    loss = weighted_loss(turns, weights)                       # scalar

Shapes: B samples, S tokens, V vocabulary, T = S - 1 shifted positions, K assistant turns.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

Normalize = Literal["tokens", "weighted_tokens"]
NORMALIZATIONS: tuple[str, ...] = ("tokens", "weighted_tokens")


class TurnLosses(NamedTuple):
    """Token losses gathered per (sample, assistant turn); every field is ``[B, K]``.

    Attributes:
        sums: summed token loss of turn k of sample b (differentiable).
        tokens: number of supervised tokens of that turn (float, no gradient).
        means: ``sums / tokens``; 0 where the turn is absent.
        present: True where sample b has supervised tokens in turn k.
    """

    sums: torch.Tensor
    tokens: torch.Tensor
    means: torch.Tensor
    present: torch.Tensor


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of every position, computed in float32.

    Args:
        logits: ``[B, S, V]`` model outputs.
        labels: ``[B, S]`` target ids, ``-100`` where not trained on (unshifted: the same
            layout as ``input_ids``).

    Returns:
        ``[B, S-1]`` loss of ``labels[:, 1:]`` predicted by ``logits[:, :-1]``; exactly 0
        where the label is ``-100``.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits [B, S, V] and labels [B, S]; got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    b, s, v = logits.shape
    pred = logits[:, :-1, :].float().reshape(-1, v)  # [B*(S-1), V]
    target = labels[:, 1:].reshape(-1)  # [B*(S-1)]
    loss = F.cross_entropy(pred, target, reduction="none", ignore_index=IGNORE_INDEX)
    return loss.view(b, s - 1)  # [B, S-1]


def shift_turn_index(turn_index: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` turn index -> ``[B, S-1]`` aligned with :func:`token_losses` (drop first)."""
    return turn_index[:, 1:]


def turn_losses(
    token_loss: torch.Tensor, turn_index: torch.Tensor, num_turns: int | None = None
) -> TurnLosses:
    """Sum and count token losses per (sample, assistant turn) in one scatter.

    Args:
        token_loss: ``[B, T]`` per-token losses (0 where not trained on).
        turn_index: ``[B, T]`` long, turn of each token's label, ``-1`` outside turns.
        num_turns: K; defaults to the largest index + 1 (at least 1).

    Returns:
        :class:`TurnLosses` with ``[B, K]`` fields. Only ``sums`` and ``means`` carry
        gradients.
    """
    if token_loss.shape != turn_index.shape or token_loss.dim() != 2:
        raise ValueError(
            f"expected token_loss and turn_index of the same [B, T] shape; got "
            f"{tuple(token_loss.shape)} and {tuple(turn_index.shape)}"
        )
    k = _num_turns(turn_index, num_turns)
    b = token_loss.shape[0]
    valid = turn_index >= 0  # [B, T]
    rows = torch.arange(b, device=turn_index.device).unsqueeze(1)  # [B, 1]
    # Flat slot b*K + k of every token; tokens outside turns add 0 to slot 0.
    slot = torch.where(valid, rows * k + turn_index, 0).reshape(-1)  # [B*T]
    values = torch.where(valid, token_loss, 0.0).reshape(-1)  # [B*T]
    sums = token_loss.new_zeros(b * k).index_add(0, slot, values).view(b, k)  # [B, K]
    counts = valid.reshape(-1).to(values.dtype).detach()
    tokens = counts.new_zeros(b * k).index_add(0, slot, counts).view(b, k)  # [B, K]
    present = tokens > 0
    means = torch.where(present, sums / tokens.clamp(min=1.0), 0.0)
    return TurnLosses(sums=sums, tokens=tokens, means=means, present=present)


def _num_turns(turn_index: torch.Tensor, num_turns: int | None) -> int:
    """K from ``num_turns`` or the data; refuses indices that do not fit."""
    largest = int(turn_index.max()) if turn_index.numel() else -1
    if num_turns is None:
        return max(largest + 1, 1)
    if num_turns < 1 or largest >= num_turns:
        raise ValueError(
            f"num_turns={num_turns} does not cover turn index {largest}; "
            "pass num_turns >= max index + 1 (and >= 1)"
        )
    return num_turns


def weighted_loss(
    turns: TurnLosses,
    weights: torch.Tensor,
    normalize: Normalize = "tokens",
    denominator: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar training loss with one weight per (sample, turn).

    With ``s_bk`` the summed token loss, ``n_bk`` the token count and ``w_bk`` the
    (detached) weight of turn k of sample b:

    * ``"tokens"``: ``L = sum_bk w_bk s_bk / sum_bk n_bk``. With ``w = 1`` this is the
      plain mean token loss, the standard SFT objective; a weight scales a turn's
      contribution without changing the others' scale.
    * ``"weighted_tokens"``: ``L = sum_bk w_bk s_bk / sum_bk w_bk n_bk``, the weighted
      mean token loss (the loss scale stays that of a mean even if weights shrink).

    Args:
        turns: from :func:`turn_losses`, fields ``[B, K]``.
        weights: ``[B, K]`` non-negative; detached here (weights are not learned).
        normalize: which denominator.
        denominator: replaces the batch's own ``sum_bk n_bk`` under ``"tokens"`` (e.g. the
            token count of all micro-batches of a gradient-accumulation step).

    Returns:
        0-dim tensor. When the denominator is 0 (no supervised tokens, or all weights 0
        under ``"weighted_tokens"``) the numerator is 0 too and 0 is returned, still
        attached to ``sums`` so that ``backward`` works and gives zero gradients.
    """
    if weights.shape != turns.sums.shape:
        raise ValueError(
            f"weights {tuple(weights.shape)} must have the shape of the turn losses "
            f"{tuple(turns.sums.shape)}"
        )
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; expected one of {NORMALIZATIONS}")
    if denominator is not None and normalize != "tokens":
        raise ValueError('denominator is only used with normalize="tokens"')
    w = weights.detach().to(turns.sums.dtype)  # [B, K]
    numerator = (w * turns.sums).sum()
    if normalize == "weighted_tokens":
        denom = (w * turns.tokens).sum()
    elif denominator is not None:
        denom = torch.as_tensor(denominator, dtype=numerator.dtype, device=numerator.device)
    else:
        denom = turns.tokens.sum()
    # A zero denominator implies a zero numerator; divide by 1 so no inf/NaN enters.
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return numerator / safe
