"""Expanding a sweep into data jobs, training passes and runs, each named by a hash.

The grid is model x method x mixture x size x seed. It expands into:

- :class:`DataJob`: one corrupted pool per (mixture, data seed), of the largest size;
  every training size is a prefix of it.
- :class:`TrainPass`: one single-epoch, constant-LR training pass per (model, method,
  mixture, seed), saving a checkpoint after the step at which each size has been seen.
- :class:`Run`: one per (model, method, mixture, size, seed), evaluated from the
  checkpoint ``samples-<size>`` of its pass; plus one base run (size 0) per model,
  shared by every method and mixture.

Why one pass serves every size. With a constant learning rate (no decay that depends on
the total number of steps), a fixed data order and no shuffling, the first ``n`` samples
of the pass produce exactly the updates that a separate run on the ``n``-sample prefix
would produce (same seed, same batches, same optimizer state), so the checkpoint saved
after ``n`` samples *is* that run's final model. Sizes must therefore be multiples of the
effective batch size. A warm-up is allowed (it is the same at the start of every run).

Identities. Each object's ``identity()`` holds what determines its outputs (not labels,
not paths); the directory name is a readable prefix plus the hash of that identity. Two
sweeps sharing a results folder therefore share finished work wherever it is identical.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from resure.sweep.config import MethodSpec, MixtureSpec, ModelSpec, SweepConfig
from resure.sweep.stages import stable_hash

BASE_LABEL = "base"


@dataclass(frozen=True)
class DataJob:
    """The corrupted pool of one (model, mixture, data seed).

    The model matters only through its tokenizer: dialogues are cut to the assistant
    turns that fit in ``max_length`` tokens before the pool is drawn and corrupted, so
    that every dialogue of the pool is trained on, and the corrupted share is the share
    of trained turns.
    """

    model: ModelSpec
    mixture: MixtureSpec
    data_seed: int
    pool_size: int
    max_length: int | None
    data: dict[str, Any]  # DataSpec fields except the seed

    def identity(self) -> dict[str, Any]:
        return {
            "tokenizer": self.model.name,
            "max_length": self.max_length,
            "mixture": self.mixture.identity(),
            "data_seed": self.data_seed,
            "pool_size": self.pool_size,
            "data": self.data,
        }

    @property
    def hash(self) -> str:
        return stable_hash(self.identity())

    @property
    def dirname(self) -> str:
        return f"{self.model.label}.{self.mixture.label}.d{self.data_seed}-{self.hash}"


@dataclass(frozen=True)
class TrainPass:
    """One training pass with checkpoints at every size."""

    model: ModelSpec
    method: MethodSpec
    data: DataJob
    seed: int
    sizes: tuple[int, ...]
    train: dict[str, Any]

    def identity(self, with_sizes: bool = True) -> dict[str, Any]:
        out = {
            "model": self.model.name,
            "method": self.method.method,
            "method_options": self.method.options,
            "data": self.data.identity(),
            "seed": self.seed,
            "train": self.train,
        }
        if with_sizes:
            out["sizes"] = list(self.sizes)
        return out

    @property
    def hash(self) -> str:
        return stable_hash(self.identity())

    @property
    def dirname(self) -> str:
        m = self
        return f"{m.model.label}.{m.method.label}.{m.data.mixture.label}.s{m.seed}-{m.hash}"


@dataclass(frozen=True)
class Run:
    """One point of a curve: a model after ``size`` samples (0: the base model)."""

    model: ModelSpec
    size: int
    train_pass: TrainPass | None = None

    @property
    def is_base(self) -> bool:
        return self.train_pass is None

    @property
    def method(self) -> str:
        return BASE_LABEL if self.train_pass is None else self.train_pass.method.label

    @property
    def mixture(self) -> str:
        return BASE_LABEL if self.train_pass is None else self.train_pass.data.mixture.label

    @property
    def seed(self) -> int | None:
        return None if self.train_pass is None else self.train_pass.seed

    def identity(self) -> dict[str, Any]:
        if self.train_pass is None:
            return {"model": self.model.name, "size": 0}
        # A run does not depend on the other sizes of its pass (see module docstring).
        return {**self.train_pass.identity(with_sizes=False), "size": self.size}

    @property
    def hash(self) -> str:
        return stable_hash(self.identity())

    @property
    def dirname(self) -> str:
        if self.train_pass is None:
            return f"{self.model.label}.{BASE_LABEL}-{self.hash}"
        p = self.train_pass
        return (f"{self.model.label}.{p.method.label}.{p.data.mixture.label}.n{self.size}"
                f".s{p.seed}-{self.hash}")


@dataclass(frozen=True)
class Plan:
    """Everything a sweep will do, in execution order."""

    data_jobs: tuple[DataJob, ...]
    passes: tuple[TrainPass, ...]
    base_runs: tuple[Run, ...]
    runs: tuple[Run, ...]  # trained runs, grouped by pass

    def runs_of(self, train_pass: TrainPass) -> list[Run]:
        return [r for r in self.runs if r.train_pass == train_pass]

    @property
    def all_runs(self) -> tuple[Run, ...]:
        return (*self.base_runs, *self.runs)


def train_settings(config: SweepConfig) -> dict[str, Any]:
    """The ``[train]`` table plus what the sweep imposes (one constant-LR epoch)."""
    train = dict(config.train)
    warmup = train.get("warmup_steps", 0)
    train["lr_scheduler"] = "constant_with_warmup" if warmup else "constant"
    train["epochs"] = 1.0
    return train


def expand(config: SweepConfig) -> Plan:
    """The grid of ``config`` as data jobs, passes and runs (deterministic order)."""
    data_fields = {k: v for k, v in dataclasses.asdict(config.data).items() if k != "seed"}
    pool_size = max(config.sizes)
    train = train_settings(config)
    max_length = train.get("max_length", _train_default("max_length"))
    jobs: dict[tuple[str, str, int], DataJob] = {}
    passes = []
    runs = []
    for model in config.models:
        for mixture in config.mixtures:
            for seed in config.seeds:
                data_seed = seed if config.data.seed is None else config.data.seed
                key = (model.label, mixture.label, data_seed)
                if key not in jobs:
                    jobs[key] = DataJob(model, mixture, data_seed, pool_size, max_length,
                                        data_fields)
                for method in config.methods:
                    p = TrainPass(model, method, jobs[key], seed, config.sizes, train)
                    passes.append(p)
                    runs.extend(Run(model, n, p) for n in config.sizes)
    base = tuple(Run(m, 0) for m in config.models) if config.include_base else ()
    return Plan(tuple(jobs.values()), tuple(passes), base, tuple(runs))


def _train_default(name: str) -> Any:
    from resure.train import TrainConfig

    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
