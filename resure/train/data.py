"""Training examples and their batching.

Each example is one :class:`~resure.tokenize.EncodedDialogue`. The collator pads a list of
them into the tensors :class:`~resure.train.trainer.WeightedTrainer` expects::

    input_ids          [B, S] long   padded with the tokenizer's pad id
    attention_mask     [B, S] long   1 on real tokens
    labels             [B, S] long   -100 on padding (and wherever not trained on)
    turn_index         [B, S] long   -1 on padding (and outside assistant turns)
    sample_idx         [B]    long   index into the dataset's table of sample ids
    corrupted          [B, K] bool   turn k of sample b carries a corruption label
    context_corrupted  [B, K] bool   an earlier turn of turn k's context is corrupted

``K`` is the largest number of assistant turns in the batch; absent turns are False.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from resure.tokenize import IGNORE_INDEX, NO_TURN, EncodedDialogue


class DialogueDataset(Dataset):
    """A list of encoded dialogues, served as plain dicts for :class:`DialogueCollator`."""

    def __init__(self, encoded: Sequence[EncodedDialogue]):
        self.encoded = list(encoded)
        self.sample_ids: tuple[str, ...] = tuple(e.sample_id for e in self.encoded)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.encoded[i]
        return {
            "input_ids": e.input_ids,
            "labels": e.labels,
            "turn_index": e.turn_index,
            "sample_idx": i,
            "corrupted": [c is not None for c in e.corruption],
            "context_corrupted": list(e.context_corrupted),
        }


@dataclass(frozen=True)
class DialogueCollator:
    """Right-pads a list of :meth:`DialogueDataset.__getitem__` items into a batch.

    Args:
        pad_token_id: id written into padded ``input_ids`` positions (masked out anyway).
    """

    pad_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seq = max(len(it["input_ids"]) for it in items)
        turns = max(len(it["corrupted"]) for it in items)
        return {
            "input_ids": _pad([it["input_ids"] for it in items], seq, self.pad_token_id),
            "attention_mask": _pad([[1] * len(it["input_ids"]) for it in items], seq, 0),
            "labels": _pad([it["labels"] for it in items], seq, IGNORE_INDEX),
            "turn_index": _pad([it["turn_index"] for it in items], seq, NO_TURN),
            "sample_idx": torch.tensor([it["sample_idx"] for it in items], dtype=torch.long),
            "corrupted": _pad([it["corrupted"] for it in items], turns, False, torch.bool),
            "context_corrupted": _pad(
                [it["context_corrupted"] for it in items], turns, False, torch.bool
            ),
        }


def _pad(rows: list[list], width: int, value, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """``[len(rows), width]`` tensor of ``rows`` right-padded with ``value``."""
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=dtype)
    return out
