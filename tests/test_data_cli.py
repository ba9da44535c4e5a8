"""`resure data check`: summary, every invalid record, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from resure.cli import main

ASSETS = Path(__file__).parent / "assets" / "data"


def test_valid_file_exits_0_with_summary(capsys):
    code = main(["data", "check", str(ASSETS / "mtbench101_small.jsonl")])
    out = capsys.readouterr().out
    assert code == 0
    assert "format: mtbench101" in out
    assert "dialogues: 2" in out
    assert "valid: 2" in out and "invalid: 0" in out
    assert "assistant turns per valid dialogue: min 2, median 2.5, max 3" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("2 ", "3 "))]
    assert rows == [["2", "1", "#" * 40], ["3", "1", "#" * 40]]


def test_invalid_records_listed_and_exit_1(capsys):
    path = ASSETS / "openai_mixed.jsonl"
    code = main(["data", "check", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "dialogues: 7" in out
    assert "valid: 2" in out and "invalid: 5" in out
    for line, rule in [(2, "roles-alternate"), (4, "ends-with-assistant"), (5, "unique-id"),
                       (6, "json"), (7, "content-nonempty")]:
        assert f"{path}:{line}" in out and f"rule '{rule}'" in out
    assert f"{path}:2 (id=twice): rule 'roles-alternate': message 2 is 'assistant' after " \
           "'assistant'" in out


def test_format_option(capsys):
    code = main(["data", "check", str(ASSETS / "sharegpt.jsonl"), "--format", "openai"])
    out = capsys.readouterr().out
    assert code == 1
    assert "format: openai" in out
    assert "invalid: 2" in out and "record lacks 'messages'" in out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "cannot read .*missing.jsonl: No such file or directory"),
        ("q.jsonl", '{"question_id": 1}\n', "rule 'file-format': cannot detect the format"),
        ("a.json", "[{]", r"a\.json:1: rule 'json'"),
        ("notes.txt", "hello\n", "unsupported file extension"),
    ],
)
def test_unreadable_source_exits_2(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code = main(["data", "check", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert re.search(message, captured.err)


def test_many_turn_counts_are_binned(tmp_path, capsys):
    rows = []
    for n in range(1, 21):
        messages = [{"role": r, "content": "x"} for _ in range(n) for r in ("user", "assistant")]
        rows.append(json.dumps({"messages": messages}) + "\n")
    path = tmp_path / "long.jsonl"
    path.write_text("".join(rows), encoding="utf-8")
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    table = {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if line.startswith("  ") and line.split()[0][0].isdigit()
    }
    assert table == {"1": 1, "2": 1, "3-4": 2, "5-8": 4, "9-16": 8, "17-32": 4}


def test_chitchat_heldout_lists_every_invalid_dialogue(capsys):
    code = main(["data", "check", "chitchat:heldout"])
    out = capsys.readouterr().out
    assert code == 1
    assert "format: chitchat" in out
    assert "dialogues: 377" in out
    invalid = int(out.split("invalid: ")[1].split()[0])
    assert sum(line.startswith("  chitchat[") for line in out.splitlines()) == invalid
