"""Shared fixtures: tiny local tokenizers/models and the real benchmark files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tests never reach a model hub: everything is built locally or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from tiny import FAMILIES, make_model, make_tokenizer  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RESURE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (override with RESURE_SHARED_DATA); skips if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def any_tokenizer(request, tmp_path_factory):
    """A tiny tokenizer for each chat-template family (parametrised)."""
    return make_tokenizer(request.param, tmp_path_factory.mktemp(f"tok-{request.param}"))


@pytest.fixture(scope="session")
def chatml_tokenizer(tmp_path_factory):
    return make_tokenizer("chatml", tmp_path_factory.mktemp("tok-chatml"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, chatml_tokenizer) -> Path:
    """Directory holding a tiny 2-layer Llama and its ChatML tokenizer."""
    path = tmp_path_factory.mktemp("tiny-model")
    make_model(chatml_tokenizer, path)
    return path


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct as a plain HF directory (integration tests only)."""
    from resure.models import resolve_model

    cache = Path(os.environ.get("RESURE_CACHE", tmp_path_factory.mktemp("cache")))
    return resolve_model("smollm2-135m-instruct", cache_dir=cache)


@pytest.fixture(scope="session")
def lively_model_dir(tmp_path_factory, chatml_tokenizer) -> Path:
    """The tiny Llama with weights drawn at std 0.3 (seeded), so that greedy decoding
    produces varied text instead of repeating one token; for generation tests."""
    import torch

    path = tmp_path_factory.mktemp("lively-model")
    model = make_model(chatml_tokenizer, path)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def lively_adapter_dir(tmp_path_factory, lively_model_dir) -> Path:
    """A freshly initialised LoRA adapter (r=12) for ``lively_model_dir``: its B matrices
    are zero, so base and base+adapter compute the same function."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("lively-adapter")
    model = AutoModelForCausalLM.from_pretrained(str(lively_model_dir))
    config = LoraConfig(r=12, lora_alpha=24, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(str(path))
    return path
