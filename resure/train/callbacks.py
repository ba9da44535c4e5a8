"""Trainer callbacks: the weighting log and saves at given numbers of samples seen."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from resure.io import atomic_write_json, atomic_write_jsonl
from resure.train.trainer import WEIGHTING_STATE_NAME, WeightedTrainer

logger = logging.getLogger(__name__)

SNAPSHOT_INFO_NAME = "snapshot.json"


class WeightingLogCallback(TrainerCallback):
    """Appends one JSON line per logging step to ``path``.

    Each line holds ``step``, ``samples_seen``, ``epoch``, ``loss`` (the Trainer's mean
    training loss since the previous line), ``learning_rate``, the figures of
    :meth:`WeightDiagnostics.summary` over the same steps (``turns``, ``mean_weight``,
    ``frac_downweighted``, ``unweighted_loss``, ``corrupted`` / ``clean`` /
    ``context_corrupted`` with ``seen``, ``down_weighted`` and ``mean_loss``),
    ``positions`` (``{k: {count, mean, std, ...}}`` from the
    method's per-position statistics, when it keeps them) and ``method`` (its other
    diagnostics).

    Resuming: at the start of training every line with a step beyond the resumed step is
    removed (they were written after the checkpoint, and will be written again), so the
    log of a resumed run matches that of an uninterrupted one.

    Notes:
        The Trainer does not checkpoint its running loss sum; when ``checkpoint_steps`` is
        not a multiple of ``logging_steps``, the first line after a resume averages
        ``loss`` over the resumed steps only (the weighting figures are checkpointed and
        stay exact).
    """

    def __init__(self, path: str | os.PathLike, trainer: WeightedTrainer):
        self.path = Path(path)
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        kept = [row for row in _read_log(self.path) if row["step"] <= state.global_step]
        atomic_write_jsonl(self.path, kept)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer also logs end-of-training metrics (no "loss"): not a step line.
        if not logs or "loss" not in logs:
            return
        trainer = self.trainer
        row = {
            "step": state.global_step,
            "samples_seen": trainer.samples_seen,
            "epoch": state.epoch,
            "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"),
            **trainer.weight_diagnostics.summary(),
            **_method_figures(trainer.method.diagnostics()),
        }
        trainer.weight_diagnostics.reset()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _method_figures(diagnostics: dict[str, Any]) -> dict[str, Any]:
    """Split a method's diagnostics into ``positions`` keyed by position and the rest."""
    rest = {k: v for k, v in diagnostics.items() if k != "positions"}
    out: dict[str, Any] = {"method": rest}
    positions = diagnostics.get("positions")
    if isinstance(positions, list):
        out["positions"] = {
            str(row["position"]): {k: v for k, v in row.items() if k != "position"}
            for row in positions
        }
    elif positions is not None:
        out["positions"] = positions
    return out


def _read_log(path: Path) -> list[dict[str, Any]]:
    """Lines of an existing log; a torn last line (a killed process) is dropped."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}:{i + 1}: invalid JSON in the weighting log") from None
            logger.warning("%s: dropping a torn last line", path)
    return rows


class SaveAtSamplesCallback(TrainerCallback):
    """Saves a snapshot after the optimizer step at which ``n`` samples have been seen.

    Args:
        sizes: the sample counts ``n`` (multiples of the effective batch size).
        root: snapshots go to ``root/samples-<n>/``.
        trainer: the trainer (its model, tokenizer, sample count and weighting state).

    A snapshot already on disk (from an earlier, interrupted attempt) is kept.
    """

    def __init__(self, sizes: Sequence[int], root: str | os.PathLike, trainer: WeightedTrainer):
        self.sizes = sorted(sizes)
        self.root = Path(root)
        self.trainer = trainer

    def snapshot_dir(self, n: int) -> Path:
        return self.root / f"samples-{n}"

    def on_step_end(self, args, state, control, **kwargs):
        seen = self.trainer.samples_seen
        for n in self.sizes:
            target = self.snapshot_dir(n)
            if n <= seen and not target.exists():
                info = {"samples": n, "samples_seen": seen, "step": state.global_step}
                save_snapshot(self.trainer, target, info)
                logger.info("saved the model after %d samples to %s", seen, target)


def save_snapshot(
    trainer: WeightedTrainer,
    target: Path,
    info: dict[str, Any],
    info_name: str = SNAPSHOT_INFO_NAME,
) -> None:
    """Save model (adapter when peft), tokenizer, weighting state and ``info`` (as
    ``info_name``) atomically.

    Everything is written into a temporary directory beside ``target``, which is then
    renamed: ``target`` either does not exist or is complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)
    try:
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.save_pretrained(str(tmp))
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(str(tmp))
        atomic_write_json(tmp / WEIGHTING_STATE_NAME, trainer.weighting_state())
        atomic_write_json(tmp / info_name, info)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
