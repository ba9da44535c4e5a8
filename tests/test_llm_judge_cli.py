"""`resure judge` end to end: real MT-Bench files, the fake OpenAI server, the cache."""

from __future__ import annotations

import json
import logging
import re
from typing import ClassVar

import pytest
from fakeserver import Action, FakeOpenAIServer, user_message

from resure.cli import main
from resure.eval.generate import select_items
from resure.eval.judges.base import JUDGES, Judge
from resure.eval.judging import read_judgments
from resure.eval.suites import get_suite
from resure.eval.types import Judgment

JUDGMENTS = "gpt-4_single_llama3-8b-instruct.jsonl"
ANSWERS = "model_answer_llama3-8b-instruct.jsonl"


@pytest.fixture(scope="module")
def recorded(shared_data):
    """GPT-4's first recorded reply for each MT-Bench judge prompt."""
    first = {}
    with open(shared_data / "mt_bench" / JUDGMENTS, encoding="utf-8") as f:
        for row in map(json.loads, f):
            first.setdefault(row["user_prompt"], row)
    return first


def judge_args(shared_data, server, tmp_path, *extra):
    mt = shared_data / "mt_bench"
    return ["judge", "--suite", "mt_bench", "--data-dir", str(mt),
            "--answers", str(mt / ANSWERS), "--judge", "llm", "--judge-model", "gpt-4",
            "--base-url", server.base_url, "--output", str(tmp_path / "out.jsonl"),
            "--max-retries", "0", *extra]


def test_judges_mt_bench_then_reruns_from_the_cache(shared_data, recorded, tmp_path, capsys):
    failed_once = []

    def responder(body):
        prompt = user_message(body)
        if recorded[prompt]["question_id"] == 85 and not failed_once:
            failed_once.append(prompt)
            return Action.error(500)  # fails for good: no retries
        return recorded[prompt]["judgment"]

    with FakeOpenAIServer(responder=responder) as server:
        assert main(judge_args(shared_data, server, tmp_path)) == 0
        first_out = capsys.readouterr().out
        assert server.count == 160
        assert main(judge_args(shared_data, server, tmp_path)) == 0
        second_out = capsys.readouterr().out
        # Only the request that failed in transport is sent again.
        assert server.count == 161
        assert main(judge_args(shared_data, server, tmp_path)) == 0
        third_out = capsys.readouterr().out
        assert server.count == 161  # warm cache: zero HTTP calls
    assert "judged 160 turns: 155 scored, 5 failed, 0 cached" in first_out
    assert "failed no_rating: 4" in first_out and "failed server_error: 1" in first_out
    assert "judged 160 turns: 156 scored, 4 failed, 159 cached" in second_out
    assert "judged 160 turns: 156 scored, 4 failed, 160 cached" in third_out
    assert (tmp_path / "judge_cache.sqlite").is_file()

    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert set(rows[0]) >= {"question_id", "model", "judge", "user_prompt", "judgment",
                            "score", "turn", "tstamp", "failure"}
    for row in rows:
        ref = recorded[row["user_prompt"]]
        assert row["judge"] == ["gpt-4", ref["judge"][1]]
        assert row["score"] == (None if ref["score"] == -1 else ref["score"])
        assert row["failure"] == (None if ref["score"] != -1 else "no_rating")
    assert sum(r["failure"] is not None for r in rows) == 4


def test_output_is_readable_by_show(shared_data, recorded, tmp_path, capsys):
    with FakeOpenAIServer(responder=lambda b: recorded[user_message(b)]["judgment"]) as srv:
        main(judge_args(shared_data, srv, tmp_path, "--no-cache"))
    capsys.readouterr()
    assert main(["show", str(tmp_path / "out.jsonl")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("meta-llama/"))
    # Turn 1 without the 4 failures: the first-recorded scores of the other 76 questions.
    scores = [r["score"] for r in recorded.values() if r["turn"] == 1 and r["score"] != -1]
    assert float(line.split()[2]) == pytest.approx(sum(scores) / len(scores), abs=5e-4)
    assert line.split()[5:] == ["160", "4", "0"]


def test_every_request_failing_exits_nonzero(shared_data, tmp_path, capsys):
    with FakeOpenAIServer(responder=lambda body: "no verdict at all") as server:
        code = main(judge_args(shared_data, server, tmp_path, "--no-cache"))
    assert code == 1
    assert "failed no_rating: 160" in capsys.readouterr().out


def mt_bench_args(shared_data, tmp_path, *extra):
    return ["judge", "--suite", "mt_bench", "--data-dir", str(shared_data / "mt_bench"),
            "--output", str(tmp_path / "o.jsonl"), *extra]


@pytest.mark.parametrize(("extra", "message"), [
    (["--answers", "a.jsonl"], "error: --judge llm needs --judge-model"),
    (["--judge-model", "gpt-4"], "error: --judge llm grades answers: give --answers FILE"),
    (["--answers", "a.jsonl", "--judge-model", "gpt-4", "--adapter", "x"],
     "error: --adapter is for judges that run the evaluated model"),
    (["--answers", "a.jsonl", "--judge-model", "gpt-4", "--cache", "c", "--no-cache"],
     "error: --cache and --no-cache clash"),
    (["--judge", "reference_nl"], "error: unknown judge 'reference_nl'; did you mean "
                                  "'reference_nll'?"),
    (["--judge", "reference_nll"], "error: --judge reference_nll needs --judge-model "
                                   r"\(the evaluated model"),
    (["--judge", "reference_nll", "--judge-model", "m", "--judge-option", "max_len=9"],
     "error: judge 'reference_nll' has no option 'max_len'; did you mean 'max_length'?"),
    (["--judge", "reference_nll", "--judge-model", "m", "--judge-option", "max_length"],
     "error: --judge-option 'max_length': expected KEY=VALUE"),
    (["--judge", "reference_nll", "--judge-model", "m", "--limit", "0"],
     "error: --limit must be >= 1, got 0"),
    (["--judge", "reference_nll", "--judge-model", "m", "--suite-option", "tasks=x"],
     "error: suite 'mt_bench' has no option 'tasks'"),
])
def test_usage_errors_exit_2_before_loading_anything(shared_data, tmp_path, capsys, extra,
                                                     message):
    assert main(mt_bench_args(shared_data, tmp_path, *extra)) == 2
    assert re.match(message, capsys.readouterr().err)
    assert not (tmp_path / "o.jsonl").exists()


def test_unknown_suite_exits_2(tmp_path, capsys):
    assert main(["judge", "--suite", "mt_bench_10", "--judge", "reference_nll",
                 "--judge-model", "m", "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "unknown suite 'mt_bench_10'; did you mean 'mt_bench_101'?" in capsys.readouterr().err


def test_help_explains_reference_nll(capsys):
    with pytest.raises(SystemExit):
        main(["judge", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reference_nll mean NLL per token of the suite's reference turns" in text
    assert "needs no answers. --judge-model is the evaluated model" in text
    assert "--adapter its peft adapter" in text
    assert "--answers with reference_nll: only the items answered in the files are judged" in text


def test_bad_answer_row_names_file_and_line(shared_data, tmp_path, capsys):
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"question_id": 81, "model_id": "m"}\n')
    with FakeOpenAIServer() as server:
        args = judge_args(shared_data, server, tmp_path)
        args[args.index("--answers") + 1] = str(answers)
        assert main(args) == 1
        assert server.count == 0
    assert re.search(r"answers.jsonl:1: not a model-answer row", capsys.readouterr().err)


class _ConstantJudge(Judge):
    """A stand-in for a reference judge: scores reference turns, takes options."""

    needs_answers: ClassVar[bool] = False
    seen: ClassVar[dict] = {}

    def __init__(self, model=None, scale=1.0):
        _ConstantJudge.seen = {"model": model, "scale": scale}

    def judge(self, items, answers):
        assert answers is None
        return [Judgment(i.question_id, "ref", "const", 1, 5.0 * self.seen["scale"])
                for i in items]


def test_other_judges_are_dispatched_through_the_registry(shared_data, tmp_path, capsys,
                                                          caplog):
    if "test_constant" not in JUDGES:
        JUDGES.register("test_constant")(_ConstantJudge)
    out = tmp_path / "ref.jsonl"
    code = main(["judge", "--suite", "mt_bench", "--data-dir", str(shared_data / "mt_bench"),
                 "--judge", "test_constant", "--judge-model", "some/model",
                 "--judge-option", "scale=2", "--concurrency", "3", "--output", str(out)])
    assert code == 0
    assert _ConstantJudge.seen == {"model": "some/model", "scale": 2}
    assert "--concurrency only apply to --judge llm; ignored" in caplog.text
    judgments = read_judgments(out)
    assert len(judgments) == 80 and {j.score for j in judgments} == {10.0}
    assert "judged 80 turns: 80 scored, 0 failed, 0 cached" in capsys.readouterr().out


@pytest.fixture
def constant_judge():
    if "test_constant" not in JUDGES:
        JUDGES.register("test_constant")(_ConstantJudge)
    return "test_constant"


def test_limit_picks_the_items_generate_picks(shared_data, tmp_path, constant_judge):
    out = tmp_path / "ref.jsonl"
    assert main(["judge", "--suite", "mt_bench", "--data-dir", str(shared_data / "mt_bench"),
                 "--judge", constant_judge, "--limit", "5", "--seed", "3",
                 "--output", str(out)]) == 0
    items = get_suite("mt_bench").load(shared_data / "mt_bench")
    assert ([j.question_id for j in read_judgments(out)]
            == [i.question_id for i in select_items(items, 5, seed=3)])


def test_answers_select_the_items_of_a_judge_that_needs_none(shared_data, tmp_path, caplog,
                                                             constant_judge):
    caplog.set_level(logging.INFO, logger="resure.eval.judging")
    rows = (shared_data / "mt_bench" / ANSWERS).read_text().splitlines()
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join([rows[3], rows[0], rows[7]]) + "\n")
    out = tmp_path / "ref.jsonl"
    assert main(["judge", "--suite", "mt_bench", "--data-dir", str(shared_data / "mt_bench"),
                 "--judge", constant_judge, "--answers", str(answers),
                 "--output", str(out)]) == 0
    expected = sorted(json.loads(rows[k])["question_id"] for k in (0, 3, 7))
    assert [j.question_id for j in read_judgments(out)] == expected
    assert "judging the 3 of 80 items answered in" in caplog.text


def test_answers_to_no_selected_item_fail(shared_data, tmp_path, capsys, constant_judge):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": 9999, "model_id": "m",
                                   "choices": [{"index": 0, "turns": ["x"]}]}) + "\n")
    assert main(["judge", "--suite", "mt_bench", "--data-dir", str(shared_data / "mt_bench"),
                 "--judge", constant_judge, "--answers", str(answers),
                 "--output", str(tmp_path / "o.jsonl")]) == 1
    assert "none of the 1 answers in" in capsys.readouterr().err


def test_reference_nll_with_adapter_and_answers(shared_data, tmp_path, lively_model_dir,
                                                lively_adapter_dir):
    data = shared_data / "mt_bench_101"
    items = get_suite("mt_bench_101", limit_per_task=1).load(data)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": items[4].question_id, "model_id": "m",
                                   "choices": [{"index": 0, "turns": ["x"] * 2}]}) + "\n")
    out = tmp_path / "nll.jsonl"
    assert main(["judge", "--suite", "mt_bench_101", "--data-dir", str(data),
                 "--suite-option", "limit_per_task=1", "--judge", "reference_nll",
                 "--judge-model", str(lively_model_dir), "--adapter", str(lively_adapter_dir),
                 "--answers", str(answers), "--output", str(out)]) == 0
    judgments = read_judgments(out)
    assert {j.question_id for j in judgments} == {items[4].question_id}
    assert [j.turn for j in judgments] == list(range(1, len(items[4].turns) + 1))
    assert {j.model for j in judgments} == {f"{lively_model_dir.name}+{lively_adapter_dir.name}"}
