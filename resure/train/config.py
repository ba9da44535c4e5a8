"""The options of one training run, validated once, up front."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

POLICIES = ("error", "skip")
LR_SCHEDULERS = ("linear", "constant", "constant_with_warmup", "cosine")

# Fields that do not change what is trained, so a rerun that differs only in them reuses
# the finished run.
_NOT_HASHED = frozenset(
    {"output_dir", "cache_dir", "num_threads", "checkpoint_steps", "keep_checkpoints", "progress"}
)


@dataclass
class TrainConfig:
    """Everything that defines a fine-tuning run.

    Attributes:
        model: a known model name (``smollm2-135m-instruct``) or a local model directory.
        data: a data source for :func:`resure.data.load_conversations` (a file path or
            ``chitchat:train``); None when conversations are passed to ``train`` directly.
        format: the data format (None: inferred by the loader).
        policy: ``"error"`` stops at the first bad record or unencodable dialogue;
            ``"skip"`` leaves them out, counts them and lists them in ``skipped.jsonl``.
        method: weighting method name (see :func:`resure.weighting.available_weightings`).
        method_options: keyword options of the method.
        num_samples: train on the first ``num_samples`` conversations *in the given order*
            (no shuffle before the cut: the sweep passes nested, already shuffled subsets).
            None: all of them.
        seed: seeds model initialisation (LoRA), dropout and the data order.
        output_dir: the run directory.
        max_length: token limit per dialogue; later whole turns are cut (see
            :func:`resure.tokenize.encode_conversation`).
        batch_size: dialogues per micro-batch.
        grad_accum: micro-batches per optimizer step.
        lr: peak learning rate.
        epochs: passes over the data (ignored by the Trainer when ``max_steps`` is set).
        max_steps: optimizer steps to run; None: as many as ``epochs`` needs.
        lr_scheduler: one of :data:`LR_SCHEDULERS`.
        warmup_steps: linear warm-up steps.
        lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA settings; target
            modules None means peft's default for the architecture.
        full_finetune: train every weight instead of a LoRA adapter.
        logging_steps: write a weighting-log line every this many optimizer steps.
        save_at_samples: also save the model after the optimizer step at which this many
            samples have been seen, under ``checkpoints/samples-<n>/``.
        shuffle: shuffle the data order (seeded, per epoch). None: True, except with
            ``save_at_samples``, where the given order is kept so that ``samples-<n>`` has
            seen exactly the first ``n`` dialogues.
        normalize: normalisation of :func:`resure.losses.weighted_loss`.
        cache_dir: where converted models are cached (see :mod:`resure.models`).
        num_threads: torch intra-op threads (None: torch's default).
        checkpoint_steps: save a resumable Trainer checkpoint every this many steps.
        keep_checkpoints: keep the resumable checkpoints once the run has finished.
        progress: show the Trainer's progress bar.
    """

    model: str
    output_dir: str
    data: str | None = None
    format: str | None = None
    policy: str = "error"
    method: str = "uniform"
    method_options: dict[str, Any] = field(default_factory=dict)
    num_samples: int | None = None
    seed: int = 0
    max_length: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int | None = None
    lr_scheduler: str = "linear"
    warmup_steps: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    full_finetune: bool = False
    logging_steps: int = 10
    save_at_samples: list[int] = field(default_factory=list)
    shuffle: bool | None = None
    normalize: str = "tokens"
    cache_dir: str | None = None
    num_threads: int | None = None
    checkpoint_steps: int | None = None
    keep_checkpoints: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.output_dir = str(self.output_dir)
        self.model = str(self.model)
        self.save_at_samples = sorted(int(n) for n in self.save_at_samples)
        if self.lora_target_modules is not None:
            self.lora_target_modules = list(self.lora_target_modules)
        _validate(self)

    @property
    def effective_batch_size(self) -> int:
        """Dialogues per optimizer step."""
        return self.batch_size * self.grad_accum

    @property
    def shuffle_data(self) -> bool:
        """Whether the Trainer shuffles the data (resolves ``shuffle=None``)."""
        return (not self.save_at_samples) if self.shuffle is None else self.shuffle

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    def fingerprint(self) -> str:
        """Hash of the fields that change what is trained (not paths or thread counts)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_HASHED}
        if self.data is not None and Path(self.data).is_file():
            d["data"] = _file_sha256(Path(self.data))
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _validate(c: TrainConfig) -> None:
    """Refuse impossible or clashing options with a message naming the fix."""
    _positive(c, "batch_size", "grad_accum", "logging_steps")
    if c.max_length < 2:
        raise ValueError(f"max_length must be >= 2 tokens, got {c.max_length}")
    if c.num_samples is not None and c.num_samples < 1:
        raise ValueError(f"num_samples must be >= 1 (or None for all), got {c.num_samples}")
    if not c.lr > 0:
        raise ValueError(f"lr must be > 0, got {c.lr}")
    if c.policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {c.policy!r}")
    from resure.losses import NORMALIZATIONS

    if c.normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {c.normalize!r}")
    if c.lr_scheduler not in LR_SCHEDULERS:
        raise ValueError(f"lr_scheduler must be one of {LR_SCHEDULERS}, got {c.lr_scheduler!r}")
    if not isinstance(c.method_options, dict) or not all(
        isinstance(k, str) for k in c.method_options
    ):
        raise ValueError(f"method_options must be a dict with str keys, got {c.method_options!r}")
    if c.max_steps is not None and c.max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 (or None), got {c.max_steps}")
    if c.max_steps is not None and c.epochs != 1.0:
        raise ValueError(
            f"max_steps={c.max_steps} overrides epochs={c.epochs}; set only one of them"
        )
    if c.epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {c.epochs}")
    if c.checkpoint_steps is not None and c.checkpoint_steps < 1:
        raise ValueError(f"checkpoint_steps must be >= 1 (or None), got {c.checkpoint_steps}")
    _validate_lora(c)
    _validate_save_at_samples(c)


def _positive(c: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(c, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _validate_lora(c: TrainConfig) -> None:
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name.startswith("lora_")}
    if c.full_finetune:
        changed = [k for k, v in defaults.items() if getattr(c, k) != v]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} only apply to LoRA; drop them or drop full_finetune"
            )
        return
    if c.lora_r < 1 or c.lora_alpha <= 0:
        raise ValueError(f"lora_r must be >= 1 and lora_alpha > 0, got {c.lora_r}, {c.lora_alpha}")
    if not 0 <= c.lora_dropout < 1:
        raise ValueError(f"lora_dropout must be in [0, 1), got {c.lora_dropout}")


def _validate_save_at_samples(c: TrainConfig) -> None:
    if not c.save_at_samples:
        return
    ebs = c.effective_batch_size
    bad = [n for n in c.save_at_samples if n < 1 or n % ebs]
    if bad:
        raise ValueError(
            f"save_at_samples {bad} must be positive multiples of the effective batch size "
            f"{ebs} (batch_size {c.batch_size} x grad_accum {c.grad_accum}), since a model "
            "can only be saved between optimizer steps; round them or change batch_size"
        )
    if len(set(c.save_at_samples)) != len(c.save_at_samples):
        raise ValueError(f"save_at_samples has repeated sizes: {c.save_at_samples}")
    if c.shuffle:
        raise ValueError(
            "save_at_samples reads nested subsets off the given data order, which shuffle=True "
            "breaks; leave shuffle unset (or False) and shuffle the data beforehand"
        )
    if c.epochs != 1.0:
        raise ValueError(
            f"save_at_samples needs a single pass over the data, got epochs={c.epochs}; "
            "set epochs=1"
        )
    if c.num_samples is not None and c.save_at_samples[-1] > c.num_samples:
        raise ValueError(
            f"save_at_samples {c.save_at_samples[-1]} exceeds num_samples {c.num_samples}; "
            "raise num_samples or drop that size"
        )
