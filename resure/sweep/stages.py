"""Stage markers: a stage is skipped when its outputs exist for the same inputs.

Every stage of a sweep (prepare-data, train, generate, judge, aggregate) writes its
outputs atomically (:mod:`resure.io`) and then a marker file, also atomically::

    {"stage": "judge", "input_hash": "...", "seconds": 2.3, "units": 1,
     "finished": "2025-...", "outputs": ["judgments/chitchat_heldout.reference_nll.jsonl"]}

``input_hash`` is the hash of everything that determines the outputs (the configuration
of the stage, never file timestamps). A stage is done when its marker exists, carries the
same ``input_hash`` and every listed output exists. Since the marker is written last, a
process killed during a stage leaves the stage not done, and a rerun does it again from
its start; a stage killed after its outputs but before its marker is redone too, at the
cost of repeating the work.

``seconds`` and ``units`` (samples for training, runs otherwise) let ``--dry-run``
estimate the time left from measured stage times.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resure.io import atomic_write_json

logger = logging.getLogger(__name__)

MARKER_DIR = "stages"


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys; paths as strings)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class Stage:
    """One cached unit of work.

    Attributes:
        kind: stage kind used for time estimates (``train``, ``judge:reference_nll``, ...).
        directory: where its outputs and its marker live.
        name: marker name, unique within ``directory``.
        inputs: what determines the outputs (hashed into ``input_hash``).
        outputs: output paths relative to ``directory``.
        units: work units, for time estimates (samples for training, else 1).
    """

    kind: str
    directory: Path
    name: str
    inputs: dict[str, Any]
    outputs: tuple[str, ...]
    units: int = 1

    @property
    def input_hash(self) -> str:
        return stable_hash(self.inputs, length=64)

    @property
    def marker_path(self) -> Path:
        return self.directory / MARKER_DIR / f"{self.name}.json"

    def read_marker(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.marker_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def is_done(self) -> bool:
        marker = self.read_marker()
        if marker is None or marker.get("input_hash") != self.input_hash:
            return False
        return all((self.directory / o).exists() for o in self.outputs)

    def mark_done(self, seconds: float, extra: dict[str, Any] | None = None) -> None:
        atomic_write_json(
            self.marker_path,
            {
                "stage": self.name,
                "kind": self.kind,
                "input_hash": self.input_hash,
                "inputs": self.inputs,
                "seconds": round(seconds, 3),
                "units": self.units,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "outputs": list(self.outputs),
                **(extra or {}),
            },
        )


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


#: Seconds per unit when no stage of a kind has been measured yet, measured with
#: SmolLM2-135M on 2 CPU cores (bench/default.toml): a training pass takes about 0.42 s
#: per sample, model loading included (units: samples; 16 LoRA steps of 4 x 128 tokens in
#: 26 s); generation about 0.04 s per new token, loading included (units: turns x
#: max_new_tokens); the reference-NLL judge about 0.12 s per judged turn (32 held-out
#: dialogues of 2 turns in 6-7 s); an LLM judge behind an API is guessed at 2 s per turn.
#: The part of a kind before ":" selects the family when the full kind is missing.
DEFAULT_SECONDS = {
    "prepare": 2.0,
    "train": 0.42,
    "generate": 0.04,
    "judge": 0.12,
    "judge:reference_similarity": 0.05,
    "judge:llm": 2.0,
    "manifest": 0.2,
    "aggregate": 15.0,
}


#: What :data:`DEFAULT_SECONDS` were measured on, and the model name they hold for.
DEFAULTS_MEASURED_ON = "SmolLM2-135M on 2 CPU cores"
DEFAULTS_MODEL = "smollm2-135m-instruct"


def defaults_apply(model_names: Iterable[str]) -> bool:
    """True when every model is the one :data:`DEFAULT_SECONDS` were measured on (its
    known name, or a directory named after it, as the converted copy is); for any
    other model those figures would be off by orders of magnitude."""
    return all(Path(n).name.lower().startswith(DEFAULTS_MODEL) for n in model_names)


def measured_rates(markers: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per unit of each stage kind over finished markers."""
    total: dict[str, list[float]] = {}
    for m in markers:
        kind, seconds, units = m.get("kind"), m.get("seconds"), m.get("units") or 1
        if kind is None or seconds is None:
            continue
        acc = total.setdefault(kind, [0.0, 0.0])
        acc[0] += float(seconds)
        acc[1] += float(units)
    return {k: s / u for k, (s, u) in total.items() if u > 0}


def estimate_seconds(stage: Stage, rates: dict[str, float]) -> float:
    """Estimated seconds for ``stage``: measured rate of its kind, else the default of its
    kind's family (the part before ``:``)."""
    rate = rates.get(stage.kind)
    if rate is None:
        family = stage.kind.split(":")[0]
        rate = DEFAULT_SECONDS.get(stage.kind, DEFAULT_SECONDS.get(family, 10.0))
    return rate * stage.units


def find_markers(root: Path) -> list[dict[str, Any]]:
    """Every stage marker under ``root`` (unreadable ones are skipped with a warning)."""
    out = []
    for path in sorted(root.glob(f"**/{MARKER_DIR}/*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            logger.warning("ignoring unreadable stage marker %s: %s", path, e)
    return out
