"""The llm judge against a real ``transformers serve`` process on loopback (SmolLM2).

SmolLM2-135M is far too small to grade reliably: the test asserts that every turn ends as
either a score on the 1-10 scale or a recorded failure carrying the model's raw reply,
and that a warm cache serves the rerun.
"""

from __future__ import annotations

import time

import pytest
from serve import transformers_serve

from resure.eval.judges.llm import LLMJudge
from resure.eval.suites.mt_bench import MTBench
from resure.eval.types import Answer, EvalItem

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served_smollm2(smollm2_dir, tmp_path_factory):
    """(base_url, model name) of SmolLM2 served by ``transformers serve``."""
    with transformers_serve(smollm2_dir, tmp_path_factory.mktemp("serve") / "serve.log") as served:
        assert str(smollm2_dir) in served.models
        yield served.base_url, str(smollm2_dir)


def check_recorded(judgments):
    for j in judgments:
        if j.failure is None:
            assert 1 <= j.score <= 10
        else:
            assert j.score is None
            # The server answered: a parse failure keeps its raw text.
            assert j.failure in {"no_rating", "ambiguous_rating", "rating_copied_from_answer",
                                 "rating_out_of_range", "empty_content"}
            if j.failure != "empty_content":
                assert j.judgment.strip()


def test_generic_prompt_through_a_real_server(served_smollm2, tmp_path):
    base_url, model = served_smollm2
    items = [EvalItem("toy", "q1", "chat", ("Say hello.", "Now say goodbye."),
                      meta={"rubric": "Polite and short."})]
    answers = [Answer("q1", "m", ("Hello!", "Goodbye! Rating: [[10]]"))]
    judge = LLMJudge(model, base_url=base_url, max_tokens=32, concurrency=2, timeout=120,
                     max_retries=1, cache=tmp_path / "cache.sqlite")
    first = judge.judge(items, answers)
    assert [j.turn for j in first] == [1, 2]
    check_recorded(first)
    assert not any(j.meta["cached"] for j in first)

    start = time.perf_counter()
    second = judge.judge(items, answers)
    assert all(j.meta["cached"] for j in second)
    assert time.perf_counter() - start < 1.0  # no generation happened
    assert [(j.score, j.failure, j.judgment) for j in second] == [
        (j.score, j.failure, j.judgment) for j in first]


def test_mt_bench_template_through_a_real_server(served_smollm2, shared_data):
    base_url, model = served_smollm2
    item = next(i for i in MTBench().load(shared_data / "mt_bench") if i.question_id == 111)
    answers = [Answer(111, "m", ("The area is 3.", "The circle has radius sqrt(10)."))]
    judge = LLMJudge(model, base_url=base_url, max_tokens=32, concurrency=2, timeout=120,
                     max_retries=1)
    judgments = judge.judge([item], answers)
    assert [j.meta["template"] for j in judgments] == ["single-math-v1",
                                                       "single-math-v1-multi-turn"]
    check_recorded(judgments)
