"""MT-Bench suite, and conformance with FastChat's real GPT-4 judgments of Llama-3-8B."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import pandas as pd
import pytest
from fakeserver import FakeOpenAIServer, user_message

from resure.eval.judges.llm import LLMJudge
from resure.eval.judges.parse import parse_rating
from resure.eval.judges.prompts import render_mt_bench
from resure.eval.judging import read_answers, read_judgments
from resure.eval.show import load_frame, summarize
from resure.eval.suites.base import get_suite
from resure.eval.suites.definitions import SuiteDataError
from resure.eval.suites.mt_bench import ENV_VAR, MTBench

JUDGMENTS = "gpt-4_single_llama3-8b-instruct.jsonl"
ANSWERS = "model_answer_llama3-8b-instruct.jsonl"


@pytest.fixture(scope="module")
def mt_dir(shared_data):
    return shared_data / "mt_bench"


@pytest.fixture(scope="module")
def items(mt_dir):
    return {item.question_id: item for item in MTBench().load(mt_dir)}


@pytest.fixture(scope="module")
def answers(mt_dir):
    return {a.question_id: a for a in read_answers([mt_dir / ANSWERS])}


@pytest.fixture(scope="module")
def rows(mt_dir):
    with open(mt_dir / JUDGMENTS, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# -- the suite --------------------------------------------------------------------------


def test_loads_80_questions_in_8_categories_with_protocol_temperatures(items):
    assert len(items) == 80
    assert set(Counter(i.category for i in items.values()).values()) == {10}
    expected = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
                "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
    assert {i.category: i.temperature for i in items.values()} == expected
    assert all(len(i.turns) == 2 and i.history == "own" for i in items.values())


def test_reference_answers_exactly_for_math_reasoning_coding(items, mt_dir):
    with_ref = {q for q, i in items.items() if i.reference is not None}
    assert with_ref == {q for q, i in items.items()
                        if i.category in ("math", "reasoning", "coding")}
    assert len(with_ref) == 30
    with open(mt_dir / "reference_answer_gpt-4.jsonl", encoding="utf-8") as f:
        ref_rows = {r["question_id"]: r for r in map(json.loads, f)}
    assert items[111].reference == tuple(ref_rows[111]["choices"][0]["turns"])
    # Inline references of other categories are kept but not used for grading.
    assert items[95].reference is None and items[95].meta["inline_reference"]
    names = [p.name for p in items[111].meta["judge_prompts"]]
    assert names == ["single-math-v1", "single-math-v1-multi-turn"]
    assert [p.name for p in items[81].meta["judge_prompts"]] == ["single-v1",
                                                               "single-v1-multi-turn"]


def test_registered_and_reads_the_environment_variable(mt_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(mt_dir))
    assert len(get_suite("mt_bench").load()) == 80


def test_missing_directory_names_both_ways_and_the_download(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(SuiteDataError, match=r"--data-dir.*RESURE_MT_BENCH_DIR.*--download"):
        MTBench().load()


def test_missing_file_names_the_file_and_the_source(mt_dir, tmp_path):
    shutil.copy(mt_dir / "question.jsonl", tmp_path)
    with pytest.raises(SuiteDataError, match=r"reference_answer_gpt-4.jsonl, judge_prompts.jsonl "
                       r"not found.*FastChat"):
        MTBench().load(tmp_path)


def test_fastchat_tree_layout_is_found(mt_dir, tmp_path):
    data = tmp_path / "data"
    (data / "mt_bench" / "reference_answer").mkdir(parents=True)
    shutil.copy(mt_dir / "question.jsonl", data / "mt_bench")
    shutil.copy(mt_dir / "reference_answer_gpt-4.jsonl",
                data / "mt_bench" / "reference_answer" / "gpt-4.jsonl")
    shutil.copy(mt_dir / "judge_prompts.jsonl", data)
    assert len(MTBench().load(data / "mt_bench")) == 80


def test_bad_question_row_names_file_and_line(mt_dir, tmp_path):
    shutil.copy(mt_dir / "judge_prompts.jsonl", tmp_path)
    shutil.copy(mt_dir / "reference_answer_gpt-4.jsonl", tmp_path)
    lines = (mt_dir / "question.jsonl").read_text().splitlines()
    bad = json.loads(lines[2])
    bad["turns"] = bad["turns"][:1]
    lines[2] = json.dumps(bad)
    (tmp_path / "question.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SuiteDataError, match=r"question.jsonl:3: question 83: turns must be two"):
        MTBench().load(tmp_path)


def test_unknown_category_is_refused(mt_dir, tmp_path):
    for name in ("judge_prompts.jsonl", "reference_answer_gpt-4.jsonl"):
        shutil.copy(mt_dir / name, tmp_path)
    row = {"question_id": 1, "category": "poetry", "turns": ["a", "b"]}
    (tmp_path / "question.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(SuiteDataError, match=r"question.jsonl:1: category 'poetry' has no temp"):
        MTBench().load(tmp_path)


# -- conformance with the real judgment file --------------------------------------------


def test_every_rendered_prompt_is_byte_identical_to_fastchat(rows, items, answers):
    assert len(rows) == 170
    for row in rows:
        item, answer = items[row["question_id"]], answers[row["question_id"]]
        template = item.meta["judge_prompts"][row["turn"] - 1]
        rendered = render_mt_bench(template, item, answer, row["turn"])
        assert rendered.template == row["judge"][1], row["question_id"]
        assert rendered.user == row["user_prompt"], (row["question_id"], row["turn"])


def test_parser_recovers_every_score_and_fails_the_minus_one_rows(rows, items, answers):
    failures = []
    for row in rows:
        item, answer = items[row["question_id"]], answers[row["question_id"]]
        untrusted = render_mt_bench(item.meta["judge_prompts"][row["turn"] - 1],
                                    item, answer, row["turn"]).untrusted
        parsed = parse_rating(row["judgment"], untrusted)
        if row["score"] == -1:
            failures.append((row["question_id"], parsed.failure, row["judgment"]))
        else:
            assert parsed.score == row["score"], (row["question_id"], row["turn"])
    assert failures == [(q, "no_rating", "$ERROR$") for q in (81, 82, 83, 84)]
    # FastChat's own first-match rule agrees with ours on this file.
    for row in rows:
        m = re.search(r"\[\[(\d+\.?\d*)\]\]", row["judgment"])
        assert (float(m.group(1)) if m else -1) == row["score"]


def test_duplicated_rows_are_detected(mt_dir):
    result = summarize(load_frame([mt_dir / JUDGMENTS]))
    dropped = sorted(zip(result.dropped["question_id"], result.dropped["turn"], strict=True))
    assert dropped == [(q, 1) for q in range(81, 91)]
    assert result.table["duplicates"].tolist() == [10]
    assert result.table["judged"].tolist() == [160]


def test_fastchat_minus_one_rows_read_as_failures_with_raw_text(mt_dir):
    failed = [j for j in read_judgments(mt_dir / JUDGMENTS) if j.failure is not None]
    assert [(j.question_id, j.failure, j.judgment, j.score) for j in failed] == [
        (q, "api_error", "$ERROR$", None) for q in (81, 82, 83, 84)
    ]


def test_show_means_match_pandas_on_unique_rows(mt_dir):
    df = pd.read_json(mt_dir / JUDGMENTS, lines=True)
    unique = df.sort_values("tstamp", kind="stable").drop_duplicates(
        ["model", "question_id", "turn"], keep="last")
    scored = unique[unique["score"] != -1]
    table = summarize(load_frame([mt_dir / JUDGMENTS])).table.iloc[0]
    assert table["turn_1"] == pytest.approx(scored[scored.turn == 1]["score"].mean())
    assert table["turn_2"] == pytest.approx(scored[scored.turn == 2]["score"].mean())
    assert table["overall"] == pytest.approx(scored["score"].mean())
    assert table["failures"] == (unique["score"] == -1).sum() == 0
    assert table["turn_1"] == pytest.approx(8.275) and table["turn_2"] == pytest.approx(7.2625)


def test_replaying_the_recorded_judge_reproduces_the_file(rows, items, answers):
    """The whole judge, against a fake server replaying GPT-4's recorded replies."""
    first = {}
    for row in rows:
        first.setdefault(row["user_prompt"], row)
    with FakeOpenAIServer(responder=lambda body: first[user_message(body)]["judgment"]) as srv:
        judge = LLMJudge("gpt-4", base_url=srv.base_url, concurrency=4)
        judgments = judge.judge(list(items.values()), list(answers.values()))
        bodies = list(srv.requests)
    assert len(judgments) == 160 and len(bodies) == 160
    for j in judgments:
        recorded = first[j.user_prompt]
        assert j.meta["template"] == recorded["judge"][1]
        if recorded["score"] == -1:
            assert (j.score, j.failure, j.judgment) == (None, "no_rating", "$ERROR$")
        else:
            assert (j.score, j.failure) == (recorded["score"], None)
    body = next(b for b in bodies if "[The Start of Reference Answer]" in user_message(b))
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert (body["temperature"], body["max_tokens"], body["model"]) == (0.0, 2048, "gpt-4")
