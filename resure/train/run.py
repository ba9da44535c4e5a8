"""``train(config)``: one fine-tuning run from data to a saved adapter (or model).

The run directory (``config.output_dir``) ends up holding::

    train_config.json       the config, its fingerprint, resolved method options, data
                            counts and package versions
    skipped.jsonl           every record or dialogue left out (policy "skip"), with why
    weighting_log.jsonl     one line per logging step (see WeightingLogCallback)
    checkpoints/samples-<n>/  snapshots for ``save_at_samples``
    final/                  the trained adapter or model, tokenizer, weighting state and
                            train_result.json; its presence marks the run as done
    trainer/checkpoint-<s>/ resumable Trainer checkpoints (``checkpoint_steps``; removed
                            at the end unless ``keep_checkpoints``)

Rerunning a finished run with the same fingerprint returns its result without training;
rerunning an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resure.conversation import Conversation
from resure.io import atomic_write_json, atomic_write_jsonl
from resure.provenance import package_versions
from resure.train.config import TrainConfig

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
RESULT_NAME = "train_result.json"
CONFIG_NAME = "train_config.json"
LOG_NAME = "weighting_log.jsonl"
SKIPPED_NAME = "skipped.jsonl"
_VERSIONED = ("resure", "torch", "transformers", "peft", "accelerate", "tokenizers")


@dataclass(frozen=True)
class TrainResult:
    """Where a run's outputs are and what it did.

    Attributes:
        output_dir: the run directory.
        model_dir: ``final/``: a peft adapter (``is_adapter``) or a full model, with the
            tokenizer.
        is_adapter: True for LoRA runs.
        base_model: the model directory the adapter applies to.
        weighting_log: the JSONL weighting log.
        num_samples: dialogues trained on (after any skipped ones).
        skipped: ``{"load": n, "encode": m}``: invalid records of the whole source, and
            dialogues among the first ``num_samples`` that could not be encoded, left out
            under policy "skip" (each listed in ``skipped.jsonl``).
        steps: optimizer steps taken.
        train_runtime: seconds spent in the Trainer by the call that finished the run.
        snapshots: ``{n: directory}`` of the ``save_at_samples`` snapshots.
        fingerprint: the run key (config and data) the outputs belong to.
        reused: True when an earlier finished run was returned without training.
    """

    output_dir: str
    model_dir: str
    is_adapter: bool
    base_model: str
    weighting_log: str
    num_samples: int
    skipped: dict[str, int]
    steps: int
    train_runtime: float
    snapshots: dict[int, str]
    fingerprint: str
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        d = dict(d)
        d["snapshots"] = {int(k): v for k, v in d["snapshots"].items()}
        return cls(**d)


def train(
    config: TrainConfig,
    conversations: Sequence[Conversation] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Fine-tune ``config.model`` on the data with the configured weighting method.

    Args:
        config: the run's options.
        conversations: the data, in order; or None to load ``config.data``.
        callbacks: extra ``TrainerCallback`` objects.

    Raises:
        ValueError: clashing arguments, too little data, or an output directory holding
            a different run.
    """
    out = Path(config.output_dir)
    if (conversations is None) == (config.data is None):
        raise ValueError(
            "give the data either as config.data (a source) or as conversations, not "
            f"{'both' if config.data else 'neither'}"
        )
    key = run_fingerprint(config, conversations)
    done = _finished_result(out, key)
    if done is not None:
        logger.info("run in %s is already finished; nothing to do", out)
        return done
    _claim_output_dir(out, key)
    return _Run(config, key, conversations, list(callbacks)).execute()


def run_fingerprint(config: TrainConfig, conversations: Sequence[Conversation] | None) -> str:
    """Key of a run: the config's fingerprint, plus the data when given in memory."""
    h = hashlib.sha256(config.fingerprint().encode())
    if conversations is not None:
        for conv in conversations:
            h.update(json.dumps(conv.to_dict(), sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:16]


def _finished_result(out: Path, key: str) -> TrainResult | None:
    path = out / FINAL_DIR / RESULT_NAME
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    if d["fingerprint"] != key:
        raise ValueError(
            f"{out} holds a finished run of another config or data (fingerprint "
            f"{d['fingerprint']}, this run {key}); use another output_dir or delete it"
        )
    return TrainResult.from_dict({**d, "reused": True})


def _claim_output_dir(out: Path, key: str) -> None:
    """Refuse to resume an unfinished run of another config in ``out``."""
    path = out / CONFIG_NAME
    if path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
        if earlier != key:
            raise ValueError(
                f"{out} holds an unfinished run of another config or data (fingerprint "
                f"{earlier}, this run {key}); use another output_dir or delete it"
            )


class _Run:
    """The stages of one run, in order: set up, encode, train, save."""

    def __init__(self, config, key, conversations, callbacks):
        self.config = config
        self.key = key
        self.conversations = conversations
        self.callbacks = callbacks
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)

    def execute(self) -> TrainResult:
        import torch
        from transformers import set_seed

        c = self.config
        if c.num_threads is not None:
            torch.set_num_threads(c.num_threads)
        set_seed(c.seed)
        method = self._method()  # first: a bad option should fail before any loading
        convs, load_skipped = self._conversations()
        model, tokenizer, base = self._model()
        dataset, encode_skipped = self._dataset(convs, tokenizer)
        atomic_write_jsonl(self.out / SKIPPED_NAME, load_skipped + encode_skipped)
        skipped = {"load": len(load_skipped), "encode": len(encode_skipped)}
        self._write_manifest(base, method, len(convs), len(dataset), skipped)
        trainer = self._trainer(model, tokenizer, dataset, method)
        output = trainer.train(resume_from_checkpoint=self._last_checkpoint())
        return self._finish(trainer, output, base, len(dataset), skipped)

    # ----------------------------------------------------------------- stages

    def _conversations(self) -> tuple[list[Conversation], list[dict[str, Any]]]:
        c = self.config
        skipped: list[dict[str, Any]] = []
        if self.conversations is None:
            from resure.data import load_conversations

            loaded = load_conversations(c.data, format=c.format, policy=c.policy)
            convs = loaded.conversations
            skipped = [{"stage": "load", **asdict(p)} for p in loaded.skipped]
        else:
            convs = list(self.conversations)
        if not convs:
            atomic_write_jsonl(self.out / SKIPPED_NAME, skipped)
            raise ValueError(
                f"no valid conversation in {c.data} ({len(skipped)} records refused; "
                f"see {self.out / SKIPPED_NAME})"
            )
        if c.num_samples is not None:
            if len(convs) < c.num_samples:
                raise ValueError(
                    f"num_samples={c.num_samples} but the data holds only {len(convs)} "
                    "valid conversations; lower num_samples"
                )
            convs = convs[: c.num_samples]
        logger.info("training data: %d conversations", len(convs))
        return convs, skipped

    def _model(self):
        from resure.models import load_model_and_tokenizer, resolve_model

        c = self.config
        base = resolve_model(c.model, cache_dir=c.cache_dir)
        model, tokenizer = load_model_and_tokenizer(base, trainable=True)
        if not c.full_finetune:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                task_type="CAUSAL_LM",
                r=c.lora_r,
                lora_alpha=c.lora_alpha,
                lora_dropout=c.lora_dropout,
                target_modules=c.lora_target_modules,
            )
            model = get_peft_model(model, lora)
        model.train()
        return model, tokenizer, base

    def _dataset(self, convs, tokenizer):
        from resure.tokenize import encode_many
        from resure.train.data import DialogueDataset

        c = self.config
        result = encode_many(convs, tokenizer, max_length=c.max_length, policy=c.policy)
        dataset = DialogueDataset(result.encoded)
        skipped = [
            {"stage": "encode", "record_id": s.sample_id, "detail": s.reason}
            for s in result.skipped
        ]
        if not len(dataset):
            raise ValueError(f"no conversation could be encoded ({len(skipped)} skipped)")
        if c.save_at_samples and c.save_at_samples[-1] > len(dataset):
            raise ValueError(
                f"save_at_samples {c.save_at_samples[-1]} exceeds the {len(dataset)} "
                "trainable conversations; drop that size or add data"
            )
        return dataset, skipped

    def _method(self):
        from resure.weighting import get_weighting

        return get_weighting(self.config.method, **self.config.method_options)

    def _write_manifest(self, base, method, n_convs, n_encoded, skipped) -> None:
        atomic_write_json(
            self.out / CONFIG_NAME,
            {
                "config": self.config.to_dict(),
                "fingerprint": self.key,
                "base_model": str(base),
                "method": {"name": method.name, "options": method.options()},
                "data": {"conversations": n_convs, "encoded": n_encoded, "skipped": skipped},
                "versions": {**package_versions(_VERSIONED),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            },
        )

    def _trainer(self, model, tokenizer, dataset, method):
        from resure.train.callbacks import SaveAtSamplesCallback, WeightingLogCallback
        from resure.train.data import DialogueCollator
        from resure.train.trainer import WeightedTrainer

        trainer = WeightedTrainer(
            model=model,
            args=self._training_args(),
            train_dataset=dataset,
            data_collator=DialogueCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=self.callbacks,
            method=method,
            sample_ids=dataset.sample_ids,
            normalize=self.config.normalize,
        )
        trainer.add_callback(WeightingLogCallback(self.out / LOG_NAME, trainer))
        root = self.out / "checkpoints"
        self.saver = SaveAtSamplesCallback(self.config.save_at_samples, root, trainer)
        trainer.add_callback(self.saver)
        return trainer

    def _training_args(self):
        import torch
        from transformers import TrainingArguments

        c = self.config
        return TrainingArguments(
            output_dir=str(self.out / "trainer"),
            per_device_train_batch_size=c.batch_size,
            gradient_accumulation_steps=c.grad_accum,
            learning_rate=c.lr,
            num_train_epochs=c.epochs,
            max_steps=c.max_steps if c.max_steps is not None else -1,
            lr_scheduler_type=c.lr_scheduler,
            warmup_steps=c.warmup_steps,
            logging_strategy="steps",
            logging_steps=c.logging_steps,
            save_strategy="steps" if c.checkpoint_steps else "no",
            save_steps=c.checkpoint_steps or 500,
            save_total_limit=2,
            seed=c.seed,
            data_seed=c.seed,
            train_sampling_strategy="random" if c.shuffle_data else "sequential",
            report_to=[],
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            remove_unused_columns=False,
            label_names=["labels"],
            disable_tqdm=not c.progress,
        )

    def _last_checkpoint(self) -> str | None:
        from transformers.trainer_utils import get_last_checkpoint

        trainer_dir = self.out / "trainer"
        if not trainer_dir.is_dir():
            return None
        last = get_last_checkpoint(str(trainer_dir))
        if last is not None:
            logger.info("found checkpoint %s; resuming", last)
        return last

    def _finish(self, trainer, output, base, num_samples, skipped) -> TrainResult:
        from resure.train.callbacks import save_snapshot

        c = self.config
        dirs = {n: self.saver.snapshot_dir(n) for n in c.save_at_samples}
        snapshots = {n: str(d) for n, d in dirs.items() if d.is_dir()}
        missing = sorted(set(dirs) - set(snapshots))
        if missing:
            logger.warning("training ended before reaching save_at_samples %s", missing)
        result = TrainResult(
            output_dir=str(self.out),
            model_dir=str(self.out / FINAL_DIR),
            is_adapter=not c.full_finetune,
            base_model=str(base),
            weighting_log=str(self.out / LOG_NAME),
            num_samples=num_samples,
            skipped=skipped,
            steps=trainer.state.global_step,
            train_runtime=float(output.metrics.get("train_runtime", 0.0)),
            snapshots=snapshots,
            fingerprint=self.key,
        )
        # final/ is renamed into place complete, train_result.json included: its presence
        # is the "done" mark checked by the next call.
        save_snapshot(trainer, self.out / FINAL_DIR, result.to_dict(), info_name=RESULT_NAME)
        if not c.keep_checkpoints:
            shutil.rmtree(self.out / "trainer", ignore_errors=True)
        logger.info(
            "finished: %d steps on %d samples in %.0f s; model in %s",
            result.steps, num_samples, result.train_runtime, result.model_dir,
        )
        return result
