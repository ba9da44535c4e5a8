"""Generation with vLLM's offline engine (``vllm.LLM``), LoRA adapters served on top.

Each round's prompts go to one ``LLM.chat`` call, with one ``vllm.SamplingParams`` per
prompt (items may ask for different temperatures) and, when an adapter is given, a
``LoRARequest`` naming it. The chat template is passed explicitly (the adapter's if it
ships a tokenizer, else the base model's), so the template recorded in the answers is
the one vLLM used.

vLLM runs on CUDA only and is not a dependency of this package: it is imported when the
engine is built. Tests pass a fake ``engine`` instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resure.eval.backends.base import (
    BACKENDS,
    Completion,
    SamplingParams,
    TurnBackend,
    TurnRequest,
)
from resure.eval.backends.hf import default_model_id, local_identity, tokenizer_dir

logger = logging.getLogger(__name__)

LORA_NAME = "adapter"
LORA_ID = 1  # vLLM needs a positive integer id per distinct adapter


@BACKENDS.register("vllm")
class VLLMBackend(TurnBackend):
    """Offline batched generation with vLLM.

    Args:
        model: a model directory or known name (:func:`resure.models.resolve_model`).
        adapter: a peft LoRA adapter directory, served with ``enable_lora=True``.
        model_id: the ``model_id`` written in the answers.
        engine: an object with vLLM's ``LLM.chat`` interface; built from the other
            arguments when None.
        max_model_len, gpu_memory_utilization, dtype: passed to ``vllm.LLM``.
        engine_options: any further ``vllm.LLM`` keyword arguments.

    Notes:
        ``max_lora_rank`` is set from the adapter's ``adapter_config.json`` (its ``r``,
        rounded up to a power of two of at least 8) unless given in ``engine_options``.
        Per-request seeds (``SamplingParams.seed``) make sampling reproducible for a
        given batch composition; vLLM does not promise equal samples across versions.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        model_id: str | None = None,
        engine: Any = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.85,
        dtype: str = "auto",
        **engine_options: Any,
    ):
        from resure.models import load_tokenizer, resolve_model

        self.model_path = resolve_model(model)
        self.adapter = Path(adapter) if adapter is not None else None
        if self.adapter is not None and not (self.adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{self.adapter} has no adapter_config.json; not an adapter")
        tok_dir = tokenizer_dir(self.model_path, self.adapter)
        self.tokenizer = load_tokenizer(tok_dir)
        if not isinstance(self.tokenizer.chat_template, str):
            raise ValueError(f"{tok_dir}: the vllm backend needs a single chat template string")
        self.chat_template = self.tokenizer.chat_template
        self.model_id = model_id or default_model_id(model, adapter)
        self._engine = engine
        self._engine_args = (max_model_len, gpu_memory_utilization, dtype, engine_options)

    @property
    def engine(self) -> Any:
        """The vLLM engine, started on first use (a run whose answers are stored needs none)."""
        if self._engine is None:
            self._engine = self._build_engine(*self._engine_args)
        return self._engine

    def identity(self) -> dict[str, Any]:
        return local_identity(self.name, self.model_path, self.adapter, self.tokenizer)

    def _build_engine(self, max_model_len, gpu_memory_utilization, dtype, options) -> Any:
        vllm = import_vllm()
        kwargs: dict[str, Any] = {
            "model": str(self.model_path),
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            **options,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if self.adapter is not None:
            kwargs["enable_lora"] = True
            kwargs.setdefault("max_lora_rank", lora_rank_bound(self.adapter))
        logger.info("starting vLLM engine: %s", kwargs)
        return vllm.LLM(**kwargs)

    def lora_request(self) -> Any:
        """The ``LoRARequest`` for the adapter, or None without one."""
        if self.adapter is None:
            return None
        import_vllm()
        from vllm.lora.request import LoRARequest

        return LoRARequest(lora_name=LORA_NAME, lora_int_id=LORA_ID, lora_path=str(self.adapter))

    def complete(
        self, requests: Sequence[TurnRequest], sampling: SamplingParams,
        progress: Callable[[int], object],
    ) -> list[Completion]:
        vllm = import_vllm()
        params = [
            vllm.SamplingParams(
                temperature=r.temperature,
                top_p=sampling.top_p if r.temperature > 0 else 1.0,
                max_tokens=sampling.max_new_tokens,
                seed=sampling.seed,
            )
            for r in requests
        ]
        outputs = self.engine.chat(
            [list(r.messages) for r in requests],
            sampling_params=params,
            use_tqdm=False,
            lora_request=self.lora_request(),
            chat_template=self.chat_template,
        )
        progress(len(requests))
        return [out.outputs[0].text for out in outputs]


def import_vllm():
    """The ``vllm`` module, or an :class:`ImportError` saying how to get it."""
    try:
        import vllm
    except ImportError as e:
        raise ImportError(
            "the vllm backend needs vLLM, which runs on CUDA GPUs only: "
            "pip install 'resure[vllm]' on a GPU machine, or use --backend hf"
        ) from e
    return vllm


def lora_rank_bound(adapter: Path) -> int:
    """The adapter's rank ``r`` rounded up to a power of two, at least 8 (vLLM's
    ``max_lora_rank`` accepts such values)."""
    with open(adapter / "adapter_config.json", encoding="utf-8") as f:
        rank = int(json.load(f).get("r", 8))
    bound = 8
    while bound < rank:
        bound *= 2
    return bound
