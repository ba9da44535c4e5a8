"""A transformers ``Trainer`` whose loss weights every assistant turn.

Per micro-batch, :meth:`WeightedTrainer.compute_loss` runs::

    logits = model(input_ids, attention_mask).logits                  # [B, S, V]
    tok    = token_losses(logits, labels)                             # [B, S-1]
    turns  = turn_losses(tok, shift_turn_index(turn_index), K)        # each [B, K]
    w      = method.weights(TurnBatch(turns.means.detach(), ...))     # [B, K]
    loss   = weighted_loss(turns, w, normalize)                       # scalar

Gradient accumulation. The Trainer gathers the micro-batches of one optimizer step before
running them (``get_batch_samples``); this class counts their supervised tokens there.
With ``normalize="tokens"`` that count is the denominator of every micro-batch's loss, so
the accumulated gradient equals that of one batch holding all micro-batches:
``sum_bk w_bk s_bk / sum_bk n_bk`` over the whole step. With ``"weighted_tokens"`` the
step's weighted token count is not known before its last micro-batch has been weighted,
so each micro-batch is normalised by its own weighted count and the Trainer averages the
micro-batch losses (divides by the number of micro-batches).

The weighting method is called once per micro-batch, in order, with ``step`` = the
optimizer step being accumulated; with ``grad_accum=1`` that is once per step.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from resure.io import atomic_write_json
from resure.losses import (
    TurnLosses,
    shift_turn_index,
    token_losses,
    turn_losses,
    weighted_loss,
)
from resure.weighting.base import TurnBatch, WeightingMethod

logger = logging.getLogger(__name__)

WEIGHTING_STATE_NAME = "weighting_state.json"


class WeightDiagnostics:
    """Figures about the turns and weights seen between two log lines.

    A turn is *down-weighted* when its weight is below 1. Corruption counts split the
    present turns into ``corrupted`` (the turn carries a corruption label) and ``clean``
    (it does not); ``context_corrupted`` counts the turns whose context holds an earlier
    corrupted turn (a subset that may overlap both). ``mean_loss`` of a group is the mean
    of its turns' mean token losses; ``unweighted_loss`` is the plain mean token loss of
    all supervised tokens (what uniform weighting would have optimised). ``by_position``
    gives, per assistant-turn position k (0-based, uncapped), the turns seen, their mean
    weight and how many were down-weighted.
    """

    _GROUPS = ("corrupted", "clean", "context_corrupted")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.turns = 0
        self.weight_sum = 0.0
        self.down_weighted = 0
        self.token_loss_sum = 0.0
        self.tokens = 0.0
        self.groups = {g: {"seen": 0, "down_weighted": 0, "loss_sum": 0.0} for g in self._GROUPS}
        self.positions: dict[int, dict[str, float]] = {}

    def add(
        self,
        turns: TurnLosses,
        weights: torch.Tensor,
        corrupted: torch.Tensor,
        context_corrupted: torch.Tensor,
    ) -> None:
        """Fold in one micro-batch: ``turns`` and ``weights`` ``[B, K]``, the corruption
        labels ``[B, K]`` bool."""
        w = weights.detach().to("cpu", torch.float64)
        present = turns.present.detach().cpu()
        means = turns.means.detach().to("cpu", torch.float64)
        down = present & (w < 1)
        self.turns += int(present.sum())
        self.weight_sum += float(w[present].sum())
        self.down_weighted += int(down.sum())
        self.token_loss_sum += float(turns.sums.detach().double().sum())
        self.tokens += float(turns.tokens.sum())
        masks = {
            "corrupted": present & corrupted.cpu(),
            "clean": present & ~corrupted.cpu(),
            "context_corrupted": present & context_corrupted.cpu(),
        }
        for name, mask in masks.items():
            group = self.groups[name]
            group["seen"] += int(mask.sum())
            group["down_weighted"] += int((mask & down).sum())
            group["loss_sum"] += float(means[mask].sum())
        self._add_positions(w, present, down)

    def _add_positions(self, w: torch.Tensor, present: torch.Tensor, down: torch.Tensor) -> None:
        seen = present.sum(dim=0)  # [K]
        weight = torch.where(present, w, torch.zeros_like(w)).sum(dim=0)  # [K]
        lowered = down.sum(dim=0)  # [K]
        for k in torch.nonzero(seen).flatten().tolist():
            row = self.positions.setdefault(k, {"seen": 0, "weight_sum": 0.0, "down_weighted": 0})
            row["seen"] += int(seen[k])
            row["weight_sum"] += float(weight[k])
            row["down_weighted"] += int(lowered[k])

    def summary(self) -> dict[str, Any]:
        """Means over the present turns seen since the last reset (None when none)."""
        n = self.turns
        out: dict[str, Any] = {
            "turns": n,
            "mean_weight": self.weight_sum / n if n else None,
            "frac_downweighted": self.down_weighted / n if n else None,
            "unweighted_loss": self.token_loss_sum / self.tokens if self.tokens else None,
        }
        for name, g in self.groups.items():
            mean_loss = g["loss_sum"] / g["seen"] if g["seen"] else None
            out[name] = {"seen": g["seen"], "down_weighted": g["down_weighted"],
                         "mean_loss": mean_loss}
        out["by_position"] = {
            str(k): {
                "seen": row["seen"],
                "mean_weight": row["weight_sum"] / row["seen"],
                "down_weighted": row["down_weighted"],
            }
            for k, row in sorted(self.positions.items())
        }
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "weight_sum": self.weight_sum,
            "down_weighted": self.down_weighted,
            "token_loss_sum": self.token_loss_sum,
            "tokens": self.tokens,
            "groups": {name: dict(counts) for name, counts in self.groups.items()},
            "positions": {str(k): dict(row) for k, row in self.positions.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.turns = int(state["turns"])
        self.weight_sum = float(state["weight_sum"])
        self.down_weighted = int(state["down_weighted"])
        self.token_loss_sum = float(state["token_loss_sum"])
        self.tokens = float(state["tokens"])
        self.groups = {name: dict(state["groups"][name]) for name in self._GROUPS}
        self.positions = {int(k): dict(row) for k, row in state.get("positions", {}).items()}


class WeightedTrainer(Trainer):
    """``Trainer`` with per-turn loss weights from a :class:`WeightingMethod`.

    Args:
        method: the weighting method (its state is checkpointed with the run).
        sample_ids: the dataset's sample ids; batches carry indices into it.
        normalize: see :func:`resure.losses.weighted_loss`.
        *args, **kwargs: passed to ``Trainer``.

    The training arguments must keep ``remove_unused_columns=False``: the Trainer would
    otherwise drop ``turn_index`` and the other weighting inputs.

    Notes:
        In data-parallel runs each process normalises by its own token count (the
        gradients are then averaged across processes), and each process's method sees only
        its own micro-batches unless the method merges its state across processes (the
        built-in ``resure`` and ``loss_truncation`` do).
    """

    def __init__(
        self,
        *args: Any,
        method: WeightingMethod,
        sample_ids: tuple[str, ...],
        normalize: str = "tokens",
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if self.args.remove_unused_columns:
            raise ValueError(
                "WeightedTrainer needs remove_unused_columns=False in TrainingArguments; "
                "otherwise the Trainer drops turn_index and the corruption labels"
            )
        self.method = method
        self.sample_ids = tuple(sample_ids)
        self.normalize = normalize
        # See the module docstring: "tokens" divides by the step's token count already.
        self.loss_is_scaled_for_ga = normalize == "tokens"
        self.samples_seen = 0
        self.weight_diagnostics = WeightDiagnostics()

    # ----------------------------------------------------------------- loss

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The micro-batches of one optimizer step and their supervised-token count."""
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        tokens = sum(int((shift_turn_index(b["turn_index"]) >= 0).sum()) for b in batch_samples)
        return batch_samples, tokens

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: int | torch.Tensor | None = None,
    ):
        """Weighted loss of one micro-batch (see the module docstring).

        ``num_items_in_batch`` is the step's supervised-token count from
        :meth:`get_batch_samples`; when None (a direct call) the batch's own count is used.
        """
        # No labels: the model would compute (and we would pay for) its own unweighted loss.
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        corrupted = inputs["corrupted"]  # [B, K]
        turns = turn_losses(
            token_losses(outputs.logits, inputs["labels"]),  # [B, S-1]
            shift_turn_index(inputs["turn_index"]),  # [B, S-1]
            num_turns=corrupted.shape[1],
        )
        batch = TurnBatch(
            losses=turns.means.detach(),
            present=turns.present,
            tokens=turns.tokens,
            sample_ids=tuple(self.sample_ids[i] for i in inputs["sample_idx"].tolist()),
            step=self.state.global_step,
        )
        weights = self.method.weights(batch)  # [B, K]
        _check_weights(self.method, weights, turns.present)
        denominator = num_items_in_batch if self.normalize == "tokens" else None
        loss = weighted_loss(turns, weights, normalize=self.normalize, denominator=denominator)
        self.weight_diagnostics.add(turns, weights, corrupted, inputs["context_corrupted"])
        self.samples_seen += int(inputs["input_ids"].shape[0])
        return (loss, outputs) if return_outputs else loss

    # ----------------------------------------------------------------- state

    def weighting_state(self) -> dict[str, Any]:
        """Everything besides the Trainer's own state that a resumed run needs."""
        return {
            "method": self.method.name,
            "method_state": tensors_to_json(self.method.state_dict()),
            "samples_seen": self.samples_seen,
            "global_step": self.state.global_step,
            "diagnostics": self.weight_diagnostics.state_dict(),
        }

    def load_weighting_state(self, state: dict[str, Any]) -> None:
        if state["method"] != self.method.name:
            raise ValueError(
                f"checkpoint was trained with weighting method {state['method']!r}, this run "
                f"uses {self.method.name!r}; resume with the same method or start afresh"
            )
        self.method.load_state_dict(tensors_from_json(state["method_state"]))
        self.samples_seen = int(state["samples_seen"])
        self.weight_diagnostics.load_state_dict(state["diagnostics"])

    def _save_checkpoint(self, model, trial) -> None:
        # Written before the Trainer's own files, whose trainer_state.json comes last: a
        # checkpoint that has it is complete.
        folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        target = Path(self._get_output_dir(trial=trial)) / folder / WEIGHTING_STATE_NAME
        atomic_write_json(target, self.weighting_state())
        super()._save_checkpoint(model, trial)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """``Trainer.train`` that also restores the weighting state of the checkpoint."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint to resume from in {self.args.output_dir}")
        if resume_from_checkpoint:
            path = Path(resume_from_checkpoint) / WEIGHTING_STATE_NAME
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: the checkpoint was not written by WeightedTrainer, "
                    "so the weighting state cannot be restored; start afresh"
                )
            self.load_weighting_state(json.loads(path.read_text(encoding="utf-8")))
            logger.info(
                "resuming from %s (%d samples seen)", resume_from_checkpoint, self.samples_seen
            )
        return super().train(resume_from_checkpoint=resume_from_checkpoint or None, **kwargs)


def _check_weights(method: WeightingMethod, weights: torch.Tensor, present: torch.Tensor) -> None:
    """Refuse weights that break the :class:`WeightingMethod` contract."""
    if weights.shape != present.shape:
        raise ValueError(
            f"weighting method {method.name!r} returned weights of shape "
            f"{tuple(weights.shape)}, expected {tuple(present.shape)}"
        )
    if bool((weights < 0).any()) or bool(weights[~present].ne(0).any()):
        raise ValueError(
            f"weighting method {method.name!r} returned negative weights or non-zero "
            "weights for absent turns"
        )


def tensors_to_json(obj: Any) -> Any:
    """Replace tensors in nested dicts/lists by ``{"__tensor__", "dtype"}`` records."""
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": obj.detach().cpu().tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {k: tensors_to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [tensors_to_json(v) for v in obj]
    return obj


def tensors_from_json(obj: Any) -> Any:
    """Inverse of :func:`tensors_to_json` (tuples come back as lists)."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        dtype = getattr(torch, obj["dtype"].removeprefix("torch."))
        return torch.tensor(obj["__tensor__"], dtype=dtype)
    if isinstance(obj, dict):
        return {k: tensors_from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [tensors_from_json(v) for v in obj]
    return obj


def read_weighting_state(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """The weighting state saved in a checkpoint or snapshot directory."""
    return json.loads((Path(checkpoint_dir) / WEIGHTING_STATE_NAME).read_text(encoding="utf-8"))
