"""Generation with transformers' ``generate``, batched across dialogues turn by turn.

Within a round (see :func:`~resure.eval.backends.base.plan_rounds`) the prompts are
grouped by temperature, sorted by length (less padding) and cut into batches of
``batch_size``; each batch is left-padded, so every prompt ends at the same position and
the new tokens of all rows start right after it. Decoding is greedy at temperature 0 and
samples (temperature, top-p) otherwise, seeded per batch by :func:`batch_seed`.
Generation stops at the tokenizer's EOS, the model's generation-config EOS ids, or the
chat template's end-of-turn token, whichever comes first.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resure.eval.backends.base import (
    BACKENDS,
    Completion,
    SamplingParams,
    TurnBackend,
    TurnFailure,
    TurnRequest,
)

logger = logging.getLogger(__name__)

_MARK = "\x00resure-end-of-turn-probe\x00"


# Adapter directory names that say where in a run an adapter sits, not which run it is.
_GENERIC_DIR = re.compile(r"(final|adapter|adapters|model|output|outputs|best"
                          r"|(samples|checkpoint|step|epoch)-\d+)", re.IGNORECASE)
# Directories that only group checkpoints; left out of the id.
_GROUPING_DIR = {"checkpoints", "adapters"}


def default_model_id(model: str | os.PathLike, adapter: str | os.PathLike | None) -> str:
    """The ``model_id`` of answers and judgments when none is given.

    Without an adapter, the model's directory (or known) name. With one,
    ``<model name>+<adapter name>``, where the adapter name is its directory's name prefixed
    by its parents' while those names are generic (``final``, ``adapter``, ``samples-<n>``,
    ``checkpoint-<n>``...), skipping ``checkpoints/``: ``runs/r1/final`` gives
    ``smol+r1-final`` and ``runs/r2/checkpoints/samples-100`` gives ``smol+r2-samples-100``,
    so two runs' answers never share a file name.
    """
    model_name = Path(str(model)).name
    if adapter is None:
        return model_name
    return f"{model_name}+{adapter_run_name(adapter)}"


def adapter_run_name(adapter: str | os.PathLike) -> str:
    """The adapter directory's name, with parents' names while it is generic (see
    :func:`default_model_id`)."""
    path = Path(adapter).resolve()
    names = [path.name]
    for parent in path.parents:
        if not _GENERIC_DIR.fullmatch(names[-1]) or not parent.name:
            break
        if parent.name.lower() not in _GROUPING_DIR:
            names.append(parent.name)
    return "-".join(reversed(names))


@BACKENDS.register("hf", aliases=("transformers",))
class HFBackend(TurnBackend):
    """Local generation with a transformers model and an optional peft adapter.

    Args:
        model: a model directory or known name (:func:`resure.models.resolve_model`).
        adapter: a peft adapter directory applied on top, or None.
        batch_size: prompts per ``generate`` call.
        model_id: the ``model_id`` written in the answers (default
            :func:`default_model_id`).
        dtype: torch dtype of the weights (default float32).
        device: torch device, e.g. ``"cuda"`` (default: CPU).

    Attributes:
        generated_tokens: new tokens produced so far (up to and including the stop token),
            for throughput figures.

    Notes:
        A prompt longer than the model's context minus ``max_new_tokens`` is not cut: its
        turn fails (a :class:`~resure.eval.backends.base.TurnFailure` naming the lengths),
        so the item gets no answer and the failure is counted.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        batch_size: int = 8,
        model_id: str | None = None,
        dtype: Any = None,
        device: str | None = None,
    ):
        from resure.models import load_tokenizer, resolve_model

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = resolve_model(model)
        self.adapter = Path(adapter) if adapter is not None else None
        self.tokenizer = load_tokenizer(tokenizer_dir(self.model_path, self.adapter))
        # Left padding: every prompt of a batch then ends at the same position, where
        # generation starts for all rows.
        self.tokenizer.padding_side = "left"
        self.batch_size = batch_size
        self.model_id = model_id or default_model_id(model, adapter)
        self.dtype = dtype
        self.device = device
        self.generated_tokens = 0
        self._model = None
        self._stop_ids: tuple[int, ...] | None = None

    @property
    def model(self):
        """The model, loaded on first use (a run whose answers are stored needs none)."""
        if self._model is None:
            from resure.models import load_model_and_tokenizer

            self._model = load_model_and_tokenizer(
                self.model_path, adapter=self.adapter, dtype=self.dtype
            ).model
            if self.device is not None:
                self._model.to(self.device)
        return self._model

    @property
    def stop_ids(self) -> tuple[int, ...]:
        if self._stop_ids is None:
            self._stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config)
        return self._stop_ids

    def identity(self) -> dict[str, Any]:
        return local_identity(self.name, self.model_path, self.adapter, self.tokenizer)

    def prompt_text(self, request: TurnRequest) -> str:
        """The rendered chat template for one request, ending with the generation prompt."""
        return self.tokenizer.apply_chat_template(
            list(request.messages), add_generation_prompt=True, tokenize=False
        )

    def complete(
        self, requests: Sequence[TurnRequest], sampling: SamplingParams,
        progress: Callable[[int], object],
    ) -> list[Completion]:
        texts = [self.prompt_text(r) for r in requests]
        # Templates write their own BOS, so the tokenizer must not add another.
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]
        out: list[Completion | None] = [None] * len(requests)
        fitting = []
        for k, (r, n) in enumerate(zip(requests, lengths, strict=True)):
            problem = self._length_problem(n, sampling.max_new_tokens)
            if problem is None:
                fitting.append(k)
            else:
                out[k] = TurnFailure(r.question_id, r.turn + 1, problem)
        progress(len(requests) - len(fitting))
        for batch in self._batches_of([requests[k] for k in fitting],
                                      [lengths[k] for k in fitting]):
            batch = [fitting[k] for k in batch]
            answers = self._generate([texts[k] for k in batch], requests[batch[0]].temperature,
                                     sampling, batch_seed(sampling.seed,
                                                          [requests[k] for k in batch]))
            for k, text in zip(batch, answers, strict=True):
                out[k] = text
            progress(len(batch))
        return out  # type: ignore[return-value]  # every slot is filled above

    def _batches_of(self, requests: Sequence[TurnRequest], lengths: Sequence[int]):
        """Index batches: same temperature, longest prompts first, ``batch_size`` each."""
        by_temperature: dict[float, list[int]] = {}
        for k, r in enumerate(requests):
            by_temperature.setdefault(r.temperature, []).append(k)
        for temperature in sorted(by_temperature):
            order = sorted(by_temperature[temperature], key=lambda k: -lengths[k])
            for start in range(0, len(order), self.batch_size):
                yield order[start : start + self.batch_size]

    def _length_problem(self, prompt_tokens: int, max_new_tokens: int) -> str | None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is None or prompt_tokens + max_new_tokens <= limit:
            return None
        return (f"prompt of {prompt_tokens} tokens plus max_new_tokens={max_new_tokens} "
                f"exceeds the model's {limit} positions")

    def _generate(self, texts: list[str], temperature: float, sampling: SamplingParams,
                  seed: int):
        import torch

        enc = self.tokenizer(texts, add_special_tokens=False, padding=True,
                             return_tensors="pt").to(self.model.device)
        config = self._generation_config(temperature, sampling)
        with torch.inference_mode(), torch.random.fork_rng(devices=self._rng_devices()):
            # fork_rng keeps the caller's random state untouched by the seeding.
            torch.manual_seed(seed)
            sequences = self.model.generate(**enc, generation_config=config)
        new = sequences[:, enc["input_ids"].shape[1] :]  # [batch, new_tokens]
        self.generated_tokens += self._count_tokens(new)
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _generation_config(self, temperature: float, sampling: SamplingParams):
        from transformers import GenerationConfig

        common = dict(
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=list(self.stop_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if temperature == 0:
            return GenerationConfig(do_sample=False, **common)
        return GenerationConfig(
            do_sample=True, temperature=temperature, top_p=sampling.top_p, top_k=0, **common
        )

    def _count_tokens(self, new) -> int:
        """Tokens up to and including the first stop token of each row. ``new``: [B, T]."""
        import torch

        is_stop = torch.isin(new, torch.tensor(self.stop_ids, device=new.device))
        has_stop = is_stop.any(dim=1)
        first = torch.where(has_stop, is_stop.int().argmax(dim=1) + 1, new.shape[1])
        return int(first.sum())

    def _rng_devices(self) -> list:
        device = self.model.device
        return [device] if device.type == "cuda" else []


def batch_seed(seed: int, requests: Sequence[TurnRequest]) -> int:
    """A seed for one batch from the run's seed and the (question, turn) pairs in it, so
    that a rerun samples the same text whatever ran before in the process."""
    key = f"{seed}|" + "|".join(f"{r.question_id}:{r.turn}" for r in requests)
    return zlib.crc32(key.encode("utf-8"))


def local_identity(
    backend: str, model_path: Path, adapter: Path | None, tokenizer
) -> dict[str, Any]:
    """The identity of a backend running a local model: the directories and a hash of the
    chat template the prompts were rendered with."""
    from resure.tokenize import chat_template_hash

    return {
        "backend": backend,
        "model": str(model_path),
        "adapter": str(adapter) if adapter else None,
        "chat_template_hash": chat_template_hash(tokenizer),
    }


def tokenizer_dir(model_path: Path, adapter: Path | None) -> Path:
    """Where the tokenizer lives: the adapter's directory if it holds one (training saves
    it there), else the model's, as :func:`resure.models.load_model_and_tokenizer`."""
    if adapter is not None and (adapter / "tokenizer_config.json").is_file():
        return adapter
    return model_path


def stop_token_ids(tokenizer, generation_config=None) -> tuple[int, ...]:
    """Token ids that end an assistant turn: EOS ids and the template's end-of-turn token.

    The end-of-turn token is found by rendering a one-round chat and taking the first
    token after the assistant's content, if it is a special token (``<|im_end|>``,
    ``<|eot_id|>``, ``<end_of_turn>``).
    """
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    eos = getattr(generation_config, "eos_token_id", None)
    ids.update([eos] if isinstance(eos, int) else (eos or []))
    turn_end = _template_turn_end(tokenizer)
    if turn_end is not None:
        ids.add(turn_end)
    if not ids:
        raise ValueError("the tokenizer defines no EOS token and its template no end-of-turn "
                         "token; generation would never stop")
    return tuple(sorted(ids))


def _template_turn_end(tokenizer) -> int | None:
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARK}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    if _MARK not in text:
        return None
    after = tokenizer(text.split(_MARK, 1)[1], add_special_tokens=False).input_ids
    special = set(tokenizer.all_special_ids) | {
        i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special
    }
    return after[0] if after and after[0] in special else None
