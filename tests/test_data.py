"""Loading, validating and saving dialogue files (openai, sharegpt, mtbench101)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from resure.conversation import Conversation, Message
from resure.data import (
    DataError,
    RecordError,
    load_conversations,
    save_conversations,
    validate_conversation,
)

ASSETS = Path(__file__).parent / "assets" / "data"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def msgs(*pairs: tuple[str, object]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


GOOD = {"id": "good", "messages": msgs(("user", "Hi"), ("assistant", "Hello"))}


# ---- each format ---------------------------------------------------------------------


def test_openai_file_loads_ids_meta_and_message_meta():
    result = load_conversations(ASSETS / "openai.jsonl")
    assert result.format == "openai"
    assert result.skipped == []
    first, second, third = result.conversations
    assert first.id == "greet"
    assert [m.role for m in first.messages] == ["system", "user", "assistant"]
    assert first.meta == {"origin": "hand-written"}
    assert second.id == "openai.jsonl:2"  # no id: <file name>:<line>
    assert second.messages[1].meta == {"corruption": "wrong_answer"}
    assert second.num_assistant_turns == 2
    assert third.id == "7"  # integer ids become strings; line 3 is blank and ignored


def test_sharegpt_json_array_maps_roles():
    result = load_conversations(ASSETS / "sharegpt.json")
    assert result.format == "sharegpt"
    first, second = result.conversations
    assert first.id == "sg-1"
    assert [m.role for m in first.messages] == [
        "system", "user", "assistant", "user", "assistant"
    ]
    assert first.messages[4].content == "To get to the other side."
    assert second.id == "sharegpt.json[1]"
    assert [m.role for m in second.messages] == ["user", "assistant"] * 3


def test_sharegpt_jsonl_loads():
    result = load_conversations(ASSETS / "sharegpt.jsonl")
    assert result.format == "sharegpt"
    assert [c.id for c in result.conversations] == ["a", "sharegpt.jsonl:2"]
    assert result.conversations[1].chat() == [
        {"role": "user", "content": "Three?"},
        {"role": "assistant", "content": "Four."},
    ]


def test_mtbench101_fixture_keeps_task():
    result = load_conversations(ASSETS / "mtbench101_small.jsonl")
    assert result.format == "mtbench101"
    conv = result.conversations[1]
    assert conv.id == "2"
    assert conv.meta == {"task": "SI"}
    assert conv.chat()[-2:] == [
        {"role": "user", "content": "Backwards."},
        {"role": "assistant", "content": "3, 2, 1."},
    ]


def test_real_mtbench101_all_load(shared_data):
    path = shared_data / "mt_bench_101" / "mtbench101.jsonl"
    result = load_conversations(path)
    assert result.format == "mtbench101"
    assert len(result.conversations) == 1388
    assert len({c.meta["task"] for c in result.conversations}) == 13
    turns = [c.num_assistant_turns for c in result.conversations]
    assert (min(turns), max(turns)) == (2, 7)
    raw = json.loads(path.read_text(encoding="utf-8").split("\n", 1)[0])
    first = result.conversations[0]
    assert first.id == str(raw["id"])
    assert first.messages[0].content == raw["history"][0]["user"]
    assert first.messages[1].content == raw["history"][0]["bot"]


# ---- detection and source errors -----------------------------------------------------


def test_explicit_format_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [GOOD])
    with pytest.raises(DataError, match=r"x\.jsonl:1 \(id=good\): rule 'schema': record lacks "
                       "'conversations'"):
        load_conversations(path, format="sharegpt")


def test_undetectable_format_lists_known_formats(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "turns": ["a"]}])
    with pytest.raises(DataError, match=r"q\.jsonl: rule 'file-format': cannot detect the "
                       r"format .*\['question_id', 'turns'\].*openai.*sharegpt.*mtbench101.*"
                       "chitchat"):
        load_conversations(path)


def test_empty_file_cannot_be_detected(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no readable record"):
        load_conversations(path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"rule 'source': unsupported file extension '\.csv'"):
        load_conversations(path)


def test_chitchat_format_needs_chitchat_source(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [GOOD])
    with pytest.raises(DataError, match="format 'chitchat' reads the chitchat-dataset package"):
        load_conversations(path, format="chitchat")


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_conversations(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"format": "csv"}, "unknown format 'csv'; known formats: openai, sharegpt, "
      "mtbench101, chitchat"), ({"policy": "ignore"}, "unknown policy 'ignore'")],
)
def test_unknown_format_or_policy(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_conversations(tmp_path / "x.jsonl", **kwargs)


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + '{"messages": [\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: rule 'json': invalid JSON"):
        load_conversations(path)


def test_bad_json_array_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n{"conversations": []},\n{oops}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json:3: rule 'json': invalid JSON"):
        load_conversations(path, policy="skip")  # the whole file is unreadable


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"messages": "\xe9"}\n')
    with pytest.raises(DataError, match=r"rule 'json': not UTF-8 text \(byte 14\)"):
        load_conversations(path)


# ---- every rule ----------------------------------------------------------------------

RULE_CASES = [
    (
        "roles-alternate",
        {"id": "abc", "messages": msgs(
            ("user", "q"), ("assistant", "a"), ("user", "q2"), ("assistant", "a2"),
            ("assistant", "a3"),
        )},
        "message 4 is 'assistant' after 'assistant'",
    ),
    (
        "roles-alternate",
        {"id": "abc", "messages": msgs(("user", "q"), ("user", "q again"), ("assistant", "a"))},
        "message 1 is 'user' after 'user'",
    ),
    (
        "starts-with-user",
        {"id": "abc", "messages": msgs(("system", "s"), ("assistant", "a"), ("user", "q"))},
        "message 1 is 'assistant'; the dialogue must open with a user message",
    ),
    (
        "system-first",
        {"id": "abc", "messages": msgs(("user", "q"), ("system", "s"), ("assistant", "a"))},
        "message 1 is 'system' after the dialogue began",
    ),
    (
        "role-known",
        {"id": "abc", "messages": msgs(("user", "q"), ("tool", "t"), ("assistant", "a"))},
        "message 1 has role 'tool'; known roles: system, user, assistant",
    ),
    (
        "content-type",
        {"id": "abc", "messages": msgs(("user", "q"), ("assistant", 42))},
        "message 1 content is int, expected str",
    ),
    (
        "content-type",
        {"id": "abc", "messages": msgs(("user", [{"type": "text", "text": "q"}]))},
        "message 0 content is list, expected str",
    ),
    (
        "content-nonempty",
        {"id": "abc", "messages": msgs(("user", "q"), ("assistant", " \n\t"))},
        r"message 1 \(assistant\) has empty content",
    ),
    (
        "has-assistant",
        {"id": "abc", "messages": msgs(("system", "s"), ("user", "q"))},
        "dialogue has no assistant turn",
    ),
    (
        "has-assistant",
        {"id": "abc", "messages": []},
        "dialogue has no assistant turn",
    ),
    (
        "ends-with-assistant",
        {"id": "abc", "messages": msgs(("user", "q"), ("assistant", "a"), ("user", "q2"))},
        r"dialogue ends with a user turn \(message 2\)",
    ),
    (
        "schema",
        {"id": "abc", "messages": "hi"},
        "record 'messages' is a string, expected a list",
    ),
    (
        "schema",
        {"id": "abc", "messages": [{"role": "user"}]},
        "message 0 lacks 'content'",
    ),
    (
        "schema",
        {"id": "abc", "messages": ["hi"]},
        "message 0 is a string, expected an object",
    ),
    (
        "schema",
        {"id": "abc", "messages": msgs(("user", "q"), ("assistant", "a")), "meta": [1]},
        "record 'meta' is a list, expected an object",
    ),
]


@pytest.mark.parametrize(("rule", "record", "detail"), RULE_CASES)
def test_each_rule_raises_with_file_line_and_id(tmp_path, rule, record, detail):
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD, record])
    expected = rf"data\.jsonl:2 \(id=abc\): rule '{rule}': {detail}"
    with pytest.raises(DataError, match=expected) as info:
        load_conversations(path)
    assert info.value.problem.rule == rule
    assert info.value.problem.location == f"{path}:2"
    assert info.value.problem.record_id == "abc"


def test_record_without_id_is_named_by_location_only(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"messages": msgs(("user", "q"))}])
    with pytest.raises(DataError, match=r"data\.jsonl:1: rule 'has-assistant'") as info:
        load_conversations(path)
    assert info.value.problem.record_id is None


def test_malformed_id_is_a_schema_problem(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"id": [1], "messages": []}])
    with pytest.raises(DataError, match=r"data\.jsonl:1: rule 'schema': 'id' is a list"):
        load_conversations(path)


def test_record_that_is_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD, [1, 2]])
    with pytest.raises(DataError, match=r"data\.jsonl:2: rule 'schema': record is a list"):
        load_conversations(path, format="openai")


def test_duplicate_id_names_first_location(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD, GOOD])
    with pytest.raises(DataError, match=rf"data\.jsonl:2 \(id=good\): rule 'unique-id': id "
                       rf"'good' already used at {re.escape(str(path))}:1"):
        load_conversations(path)


def test_sharegpt_unknown_speaker(tmp_path):
    record = {"id": "s", "conversations": [{"from": "human", "value": "q"},
                                           {"from": "observation", "value": "o"}]}
    path = write_jsonl(tmp_path / "sg.jsonl", [record])
    with pytest.raises(DataError, match=r"sg\.jsonl:1 \(id=s\): rule 'role-known': message 1 "
                       "is from 'observation'; known: system, human, user, gpt"):
        load_conversations(path)


def test_sharegpt_array_location_is_index(tmp_path):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps([{"conversations": [{"from": "gpt", "value": "a"}]}]),
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"sg\.json\[0\]: rule 'starts-with-user'"):
        load_conversations(path)


def test_mtbench101_missing_bot(tmp_path):
    record = {"task": "CM", "id": 3, "history": [{"user": "q"}]}
    path = write_jsonl(tmp_path / "mt.jsonl", [record])
    with pytest.raises(DataError, match=r"mt\.jsonl:1 \(id=3\): rule 'schema': history\[0\] "
                       "lacks 'bot'"):
        load_conversations(path)


def test_validate_conversation_directly():
    ok = Conversation("c", (Message("user", "q"), Message("assistant", "a")))
    validate_conversation(ok)
    bad = Conversation("c", (Message("user", "q"),))
    with pytest.raises(RecordError, match="rule 'has-assistant'"):
        validate_conversation(bad)


# ---- skip policy ---------------------------------------------------------------------


def test_skip_policy_keeps_valid_and_lists_every_problem(caplog):
    path = ASSETS / "openai_mixed.jsonl"
    with pytest.raises(DataError, match=r"openai_mixed\.jsonl:2 \(id=twice\): rule "
                       "'roles-alternate'"):
        load_conversations(path)
    with caplog.at_level(logging.WARNING, logger="resure.data.load"):
        result = load_conversations(path, policy="skip")
    assert [c.id for c in result.conversations] == ["ok-1", "ok-2"]
    assert [(p.location.rsplit(":", 1)[1], p.rule) for p in result.skipped] == [
        ("2", "roles-alternate"),
        ("4", "ends-with-assistant"),
        ("5", "unique-id"),
        ("6", "json"),
        ("7", "content-nonempty"),
    ]
    assert result.num_records == 7
    assert result.skipped_by_rule() == {
        "roles-alternate": 1, "ends-with-assistant": 1, "unique-id": 1, "json": 1,
        "content-nonempty": 1,
    }
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipped 5 of 7 records" in warning
    assert "roles-alternate=1" in warning and "json=1" in warning


def test_skip_policy_counts_repeated_rule(tmp_path):
    rows = [GOOD] + [{"messages": msgs(("user", f"q{i}"))} for i in range(3)]
    result = load_conversations(write_jsonl(tmp_path / "d.jsonl", rows), policy="skip")
    assert len(result.conversations) == 1
    assert result.skipped_by_rule() == {"has-assistant": 3}


# ---- saving --------------------------------------------------------------------------


def test_save_then_load_round_trips_exactly(tmp_path):
    convs = [
        Conversation(
            "tricky",
            (
                Message("system", "  keep my spaces  "),
                Message("user", "line\nbreak\r\nand\u2028separator \u00e9\U0001f600"),
                Message("assistant", "ok", {"corruption": "truncated", "score": 0.5}),
                Message("user", "next", {"context_corrupted": True}),
                Message("assistant", "done", {"nested": {"a": [1, 2]}}),
            ),
            {"source": "unit", "ratings": {"witty": 3}},
        ),
        Conversation("plain", (Message("user", "q"), Message("assistant", "a"))),
    ]
    path = tmp_path / "out" / "saved.jsonl"
    save_conversations(path, convs)
    result = load_conversations(path)
    assert result.format == "openai"
    assert result.conversations == convs
    assert [p.name for p in path.parent.iterdir()] == ["saved.jsonl"]  # no temp file left
    assert json.loads(path.read_text(encoding="utf-8").split("\n")[1]) == {
        "id": "plain",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "meta": {},
    }


def test_loaded_file_saves_back_identically(tmp_path):
    original = load_conversations(ASSETS / "openai.jsonl").conversations
    path = tmp_path / "again.jsonl"
    save_conversations(path, original)
    assert load_conversations(path).conversations == original


def test_sharegpt_speaker_that_is_not_a_string(tmp_path):
    record = {"conversations": [{"from": ["human"], "value": "q"}]}
    path = write_jsonl(tmp_path / "sg.jsonl", [record])
    with pytest.raises(DataError, match=r"sg\.jsonl:1: rule 'role-known': message 0 is from "
                       r"\['human'\]"):
        load_conversations(path, format="sharegpt")
