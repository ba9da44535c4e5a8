"""The openai backend against a real ``transformers serve`` process on loopback."""

from __future__ import annotations

import pytest
from serve import free_port, transformers_serve

from resure.eval.backends import GenerationError, SamplingParams, get_backend
from resure.eval.backends.hf import HFBackend
from resure.eval.types import EvalItem

GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)
ITEMS = [
    EvalItem("s", 1, "c", turns=("Hello, how are you?", "What is the capital of France?")),
    EvalItem("s", 2, "c", turns=("Tell me a story.", "Tell me more."), reference=("A", "B"),
             history="golden"),
    EvalItem("s", 3, "c", turns=("Write a poem about the sea.",)),
]


@pytest.fixture(scope="module")
def server(lively_model_dir, tmp_path_factory):
    """``transformers serve`` with the lively tiny model; yields the base URL."""
    with transformers_serve(lively_model_dir,
                            tmp_path_factory.mktemp("serve") / "serve.log") as served:
        yield served.base_url


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("RESURE_TEST_KEY", "unused")
    return "RESURE_TEST_KEY"


@pytest.mark.integration
def test_server_answers_equal_local_greedy_answers(server, api_key, lively_model_dir):
    backend = get_backend("openai", model=str(lively_model_dir), base_url=server,
                          api_key_env=api_key, concurrency=3)
    remote = backend.generate(ITEMS, GREEDY)
    local = HFBackend(lively_model_dir).generate(ITEMS, GREEDY)
    # Same weights, same chat template, greedy decoding: the server must write the same
    # text, so own history threads the same answers into turn 2.
    assert [a.turns for a in remote] == [a.turns for a in local]
    assert any(t for a in remote for t in a.turns)
    assert remote[0].generation["backend"] == "openai"
    assert remote[0].generation["chat_template_hash"] is None


@pytest.mark.integration
def test_server_errors_become_counted_failures(server, api_key):
    backend = get_backend("openai", model="no-such-model", base_url=server,
                          api_key_env=api_key, max_retries=0)
    with pytest.raises(GenerationError, match="3 item\\(s\\) failed; question 1 turn 1: "
                                              "BadRequestError") as info:
        backend.generate(ITEMS, GREEDY)
    assert info.value.answers == []
    assert [(f.question_id, f.turn) for f in info.value.failures] == [(1, 1), (2, 1), (3, 1)]


def test_unreachable_server_is_a_failure_not_an_empty_answer(api_key):
    backend = get_backend("openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                          api_key_env=api_key, max_retries=0, timeout=5)
    with pytest.raises(GenerationError, match="APIConnectionError") as info:
        backend.generate(ITEMS[:1], GREEDY)
    assert info.value.answers == [] and info.value.failures[0].turn == 1


def test_missing_api_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("RESURE_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="RESURE_NO_SUCH_KEY is not set"):
        get_backend("openai", model="m", api_key_env="RESURE_NO_SUCH_KEY")


def test_local_server_needs_no_api_key(monkeypatch):
    monkeypatch.delenv("RESURE_NO_SUCH_KEY", raising=False)
    backend = get_backend("openai", model="m", base_url="http://127.0.0.1:1/v1",
                          api_key_env="RESURE_NO_SUCH_KEY")
    assert backend.client.api_key == "unused"
