"""The vllm backend against a fake engine and a fake ``vllm`` module (vLLM is CUDA only).

The fakes mirror the parts of vLLM's offline API the backend uses: ``vllm.LLM(**kwargs)``,
``LLM.chat(messages_list, sampling_params=..., use_tqdm=..., lora_request=...,
chat_template=...)`` returning ``RequestOutput``-like objects (``.outputs[0].text``),
``vllm.SamplingParams(temperature, top_p, max_tokens, seed)`` and
``vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)``.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from resure.eval.backends import SamplingParams, get_backend
from resure.eval.backends.vllm_offline import lora_rank_bound
from resure.eval.types import EvalItem


@dataclass
class FakeSamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None


@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""


class FakeEngine:
    """Records every ``chat`` call; answers ``reply <n messages> <last user text>``."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None,
             chat_template=None):
        self.calls.append({"messages": messages, "sampling_params": sampling_params,
                           "lora_request": lora_request, "chat_template": chat_template})
        return [
            types.SimpleNamespace(outputs=[types.SimpleNamespace(
                text=f" reply {len(chat)} {chat[-1]['content']} ")])
            for chat in messages
        ]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.SamplingParams = FakeSamplingParams
    module.LLM = FakeEngine
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    module.lora = lora
    lora.request = request
    for name, mod in (("vllm", module), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    return module


ITEMS = [
    EvalItem("s", 1, "writing", turns=("first question", "second question"), history="own",
             temperature=0.7),
    EvalItem("s", 2, "math", turns=("solve x", "and y"), reference=("x=1", "y=2"),
             history="golden", temperature=0.0),
]


def test_chat_calls_follow_history_and_sampling(fake_vllm, lively_model_dir):
    engine = FakeEngine()
    backend = get_backend("vllm", model=lively_model_dir, engine=engine)
    answers = backend.generate(ITEMS, SamplingParams(max_new_tokens=33, top_p=0.9, seed=4))
    first, second = engine.calls
    # Round 0: item 1 turn 1, item 2 both turns (golden history needs nothing generated).
    assert [m[-1]["content"] for m in first["messages"]] == [
        "first question", "solve x", "and y"]
    assert first["messages"][2][1] == {"role": "assistant", "content": "x=1"}
    # Round 1: item 1 turn 2 sees its own (stripped) first answer.
    assert second["messages"] == [[
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "reply 1 first question"},
        {"role": "user", "content": "second question"},
    ]]
    assert first["sampling_params"] == [
        FakeSamplingParams(temperature=0.7, top_p=0.9, max_tokens=33, seed=4),
        FakeSamplingParams(temperature=0.0, top_p=1.0, max_tokens=33, seed=4),
        FakeSamplingParams(temperature=0.0, top_p=1.0, max_tokens=33, seed=4),
    ]
    assert first["lora_request"] is None
    assert first["chat_template"] == backend.tokenizer.chat_template
    assert [a.turns for a in answers] == [
        ("reply 1 first question", "reply 3 second question"), ("reply 1 solve x", "reply 3 and y")]
    assert answers[0].generation["backend"] == "vllm"
    assert answers[0].generation["chat_template_hash"]


def test_lora_request_names_the_adapter(fake_vllm, lively_model_dir, lively_adapter_dir):
    engine = FakeEngine()
    backend = get_backend("vllm", model=lively_model_dir, adapter=lively_adapter_dir,
                          engine=engine)
    answers = backend.generate(ITEMS[1:], SamplingParams(temperature=0.0))
    request = engine.calls[0]["lora_request"]
    assert isinstance(request, FakeLoRARequest)
    assert request.lora_path == str(lively_adapter_dir) and request.lora_int_id >= 1
    assert answers[0].model_id == f"{lively_model_dir.name}+{lively_adapter_dir.name}"
    assert answers[0].generation["adapter"] == str(lively_adapter_dir)


def test_engine_built_with_lora_enabled_and_rank_bound(fake_vllm, lively_model_dir,
                                                       lively_adapter_dir):
    backend = get_backend("vllm", model=lively_model_dir, adapter=lively_adapter_dir,
                          max_model_len=2048)
    engine = backend.engine
    assert isinstance(engine, FakeEngine)
    assert engine.kwargs["model"] == str(lively_model_dir)
    assert engine.kwargs["enable_lora"] is True
    assert engine.kwargs["max_lora_rank"] == 16  # r=12 rounded up
    assert engine.kwargs["max_model_len"] == 2048
    assert lora_rank_bound(lively_adapter_dir) == 16


def test_engine_not_started_until_needed(fake_vllm, lively_model_dir, monkeypatch):
    def refuse(**kwargs):
        raise AssertionError("engine started")

    monkeypatch.setattr(fake_vllm, "LLM", refuse)
    backend = get_backend("vllm", model=lively_model_dir)
    assert backend.identity()["backend"] == "vllm"


def test_missing_vllm_says_how_to_get_it(lively_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    backend = get_backend("vllm", model=lively_model_dir)
    with pytest.raises(ImportError, match="CUDA GPUs only.*--backend hf"):
        backend.generate(ITEMS, SamplingParams())


def test_adapter_without_config_refused(lively_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        get_backend("vllm", model=lively_model_dir, adapter=tmp_path, engine=FakeEngine())
