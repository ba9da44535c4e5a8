"""Suites read the real benchmark files; MT-Bench-101 aggregation against a plain reference."""

from __future__ import annotations

import json
import urllib.error
from collections import Counter
from statistics import fmean

import pytest

from resure.eval.suites import SUITES, SuiteDataError, get_suite
from resure.eval.suites.mt_bench_101 import aggregate_mt_bench_101, task_specs
from resure.eval.types import EvalItem, Judgment

TASKS = {"CM", "SI", "AR", "TS", "CC", "CR", "FR", "SC", "SA", "MR", "GR", "IC", "PI"}


def raw_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


# --- MT-Bench-101 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtb101(shared_data):
    return get_suite("mt_bench_101").load(shared_data / "mt_bench_101")


def test_mt_bench_101_counts(mtb101):
    assert len(mtb101) == 1388
    assert {item.category for item in mtb101} == TASKS
    assert sum(len(item.turns) for item in mtb101) == 4208  # the paper's turn count
    assert len({item.question_id for item in mtb101}) == 1388


def test_mt_bench_101_golden_history_with_bot_turns(mtb101, shared_data):
    rows = raw_rows(shared_data / "mt_bench_101" / "mtbench101.jsonl")
    for item, row in zip(mtb101, rows, strict=True):
        assert item.question_id == f"{row['task']}-{row['id']}"
        assert item.history == "golden"
        assert item.turns == tuple(t["user"] for t in row["history"])
        assert item.reference == tuple(t["bot"] for t in row["history"])


def test_mt_bench_101_scored_turns_and_rubrics(mtb101):
    specs = task_specs()
    assert set(specs) == TASKS
    skip_first = {code for code, spec in specs.items() if spec.skip_first_turn}
    assert skip_first == {"CM", "AR", "CR", "FR", "SC", "SA"}
    for item in mtb101:
        n = len(item.turns)
        first = 2 if item.category in skip_first else 1
        assert item.meta["scored_turns"] == list(range(first, n + 1))
        assert item.meta["rubric"] == specs[item.category].rubric
        assert item.meta["needs_reference"] == (item.category in {"MR", "GR"})
    assert all(len(spec.rubric) > 200 for spec in specs.values())


def test_mt_bench_101_subset_is_seeded_and_per_task(shared_data):
    suite = get_suite("mt_bench_101", limit_per_task=3)
    first = suite.load(shared_data / "mt_bench_101")
    again = get_suite("mt_bench_101", limit_per_task=3).load(shared_data / "mt_bench_101")
    other = get_suite("mt_bench_101", limit_per_task=3, seed=1).load(shared_data / "mt_bench_101")
    assert len(first) == 39
    assert Counter(item.category for item in first) == {task: 3 for task in TASKS}
    assert [i.question_id for i in first] == [i.question_id for i in again]
    assert {i.question_id for i in first} != {i.question_id for i in other}


def test_mt_bench_101_from_env_var(shared_data, monkeypatch):
    monkeypatch.setenv("RESURE_MT_BENCH_101_DIR", str(shared_data / "mt_bench_101"))
    assert len(get_suite("mt_bench_101", limit_per_task=1).load()) == 13


def test_missing_dir_error_names_flag_env_var_and_source(monkeypatch):
    monkeypatch.delenv("RESURE_MT_BENCH_101_DIR", raising=False)
    with pytest.raises(SuiteDataError, match="--data-dir") as info:
        get_suite("mt_bench_101").load()
    message = str(info.value)
    assert "RESURE_MT_BENCH_101_DIR" in message
    assert "network" in message and "github.com/mtbench101/mt-bench-101" in message


def test_missing_file_names_it(tmp_path):
    with pytest.raises(SuiteDataError, match=r"mt-bench_extended\.jsonl not found in .*"
                                             r"RESURE_MT_EVAL_DIR"):
        get_suite("mt_eval_followup").load(tmp_path)


def test_download_fails_cleanly_offline(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(SuiteDataError, match="could not download https://raw.githubusercontent"
                                             ".*network access"):
        get_suite("mt_bench_101", download=True).load(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_download_writes_the_file(tmp_path, monkeypatch, shared_data):
    body = (shared_data / "mt_eval" / "mt-bench_extended.jsonl").read_bytes()

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return body

    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Response())
    items = get_suite("mt_eval_followup", download=True).load(tmp_path)
    assert len(items) == 80
    assert (tmp_path / "mt-bench_extended.jsonl").read_bytes() == body


@pytest.mark.parametrize(
    ("record", "rule"),
    [
        ({"task": "XX", "id": 1, "history": [{"user": "a", "bot": "b"}]}, "not one of the 13"),
        ({"task": "GR", "id": "1", "history": [{"user": "a", "bot": "b"}]}, "'id' must be"),
        ({"task": "GR", "id": 1, "history": []}, "non-empty list"),
        ({"task": "GR", "id": 1, "history": [{"user": "a"}]}, "round 0 needs .*'bot'"),
    ],
)
def test_mt_bench_101_bad_record_names_line_and_rule(tmp_path, record, rule):
    good = {"task": "GR", "id": 7, "history": [{"user": "a", "bot": "b"}]}
    (tmp_path / "mtbench101.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(SuiteDataError, match=rf"mtbench101\.jsonl:2: .*{rule}"):
        get_suite("mt_bench_101").load(tmp_path)


def test_mt_bench_101_duplicate_id(tmp_path):
    row = json.dumps({"task": "GR", "id": 7, "history": [{"user": "a", "bot": "b"}]})
    (tmp_path / "mtbench101.jsonl").write_text(row + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(SuiteDataError, match="'GR-7' appears twice"):
        get_suite("mt_bench_101").load(tmp_path)


def test_invalid_json_names_line(tmp_path):
    (tmp_path / "mt-bench_extended.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(SuiteDataError, match=r"mt-bench_extended\.jsonl:1: invalid JSON"):
        get_suite("mt_eval_followup").load(tmp_path)


# --- MT-Eval follow-up ----------------------------------------------------------------------


def test_mt_eval_followup(shared_data):
    path = shared_data / "mt_eval" / "mt-bench_extended.jsonl"
    rows = raw_rows(path)
    items = get_suite("mt_eval_followup").load(shared_data / "mt_eval")
    # The file has 80 conversations (79 newlines: the last line has none).
    assert len(items) == len(rows) == 80
    assert [i.question_id for i in items] == [r["question_id"] for r in rows]
    assert all(i.history == "own" and len(i.turns) == 5 for i in items)
    assert Counter(i.category for i in items) == {c: 10 for c in (
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")}
    assert items[0].turns == tuple(t["user"] for t in rows[0]["conversation"])
    assert items[0].reference == tuple(t["sys"] for t in rows[0]["conversation"])
    assert "mt_eval" in SUITES  # alias


# --- chitchat held-out ----------------------------------------------------------------------


def test_chitchat_heldout_golden_with_human_turns():
    from resure.data import load_conversations

    convs = {c.id: c for c in load_conversations("chitchat:heldout", policy="skip").conversations}
    items = get_suite("chitchat_heldout", limit=5).load()
    assert len(items) == 5
    assert [i.question_id for i in items] == sorted(i.question_id for i in items)
    for item in items:
        conv = convs[item.question_id]
        assert item.history == "golden"
        assert item.turns == tuple(m.content for m in conv.messages if m.role == "user")
        assert item.reference == tuple(m.content for m in conv.assistant_turns)


def test_chitchat_heldout_subset_is_stable_and_max_turns_cuts():
    first = get_suite("chitchat_heldout", limit=8, max_turns=2).load()
    again = get_suite("chitchat_heldout", limit=8, max_turns=2).load()
    full = {i.question_id: i for i in get_suite("chitchat_heldout").load()}
    assert [i.question_id for i in first] == [i.question_id for i in again]
    for item in first:
        whole = full[item.question_id]
        assert item.turns == whole.turns[:2] and item.reference == whole.reference[:2]


def test_chitchat_rejects_bad_options():
    with pytest.raises(ValueError, match="limit must be >= 1"):
        get_suite("chitchat_heldout", limit=0)


# --- MT-Bench-101 aggregation ---------------------------------------------------------------


def item(qid: str, n: int, scored: list[int]) -> EvalItem:
    return EvalItem(suite="mt_bench_101", question_id=qid, category=qid.split("-")[0],
                    turns=("u",) * n, reference=("b",) * n, history="golden",
                    meta={"scored_turns": scored})


def judged(qid: str, scores: dict[int, float | None]) -> list[Judgment]:
    return [Judgment(question_id=qid, model="m", judge="j", turn=t, score=s,
                     failure=None if s is not None else "no rating")
            for t, s in scores.items()]


def test_aggregate_min_over_turns_then_task_means():
    items = [item("GR-1", 3, [1, 2, 3]), item("GR-2", 2, [1, 2]),
             item("CM-3", 3, [2, 3]), item("PI-4", 2, [1, 2])]
    judgments = (judged("GR-1", {1: 8, 2: 5, 3: 9}) + judged("GR-2", {1: 7, 2: 10})
                 + judged("CM-3", {1: 1, 2: 6, 3: 4}) + judged("PI-4", {1: 9, 2: None}))
    result = aggregate_mt_bench_101(judgments, items)
    # Plain reference: dialogue = min over scored turns, task = mean, overall = mean of tasks.
    assert result.dialogues == {"GR-1": 5, "GR-2": 7, "CM-3": 4}
    assert result.tasks == {"CM": 4.0, "GR": 6.0}
    assert result.overall == pytest.approx(fmean([4.0, 6.0]))
    assert result.failed == ("PI-4",)
    assert result.ignored_turns == (("CM-3", 1),)  # CM's first turn is not scored
    assert result.dialogues_per_task == {"CM": 1, "GR": 2}


def test_aggregate_without_items_reads_task_from_id():
    judgments = judged("CM-3", {1: 1, 2: 6, 3: 4}) + judged("GR-1", {1: 8, 2: 5})
    result = aggregate_mt_bench_101(judgments)
    assert result.dialogues == {"CM-3": 4, "GR-1": 5}
    assert result.ignored_turns == (("CM-3", 1),)


def test_aggregate_missing_judgment_fails_the_dialogue():
    result = aggregate_mt_bench_101(judged("GR-1", {1: 8, 2: 5}), [item("GR-1", 3, [1, 2, 3])])
    assert result.failed == ("GR-1",) and result.overall is None


def test_aggregate_refuses_duplicates_and_unknown_ids():
    with pytest.raises(ValueError, match="two judgments of dialogue 'GR-1' turn 1"):
        aggregate_mt_bench_101(judged("GR-1", {1: 8}) * 2)
    with pytest.raises(ValueError, match="does not start with a task code"):
        aggregate_mt_bench_101(judged("17", {1: 8}))
    with pytest.raises(ValueError, match="not among the items"):
        aggregate_mt_bench_101(judged("GR-9", {1: 8}), [item("GR-1", 1, [1])])
