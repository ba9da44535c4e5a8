"""`resure show`: per-model tables from our judgment files and FastChat's."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from resure.cli import main
from resure.eval.judging import judgment_from_row, judgment_to_row, read_judgments
from resure.eval.show import load_frame, summarize
from resure.eval.types import Judgment


def fastchat_row(qid, turn, score, tstamp, model="m-fc", judgment="Rating: [[x]]"):
    template = "single-v1" if turn == 1 else "single-v1-multi-turn"
    return {"question_id": qid, "model": model, "judge": ["gpt-4", template],
            "user_prompt": "p", "judgment": judgment, "score": score, "turn": turn,
            "tstamp": tstamp}


def ours(qid, turn, score, failure=None, model="m-ours", tstamp=1.0):
    return judgment_to_row(Judgment(qid, model, "judge-x", turn, score, user_prompt="p",
                                    judgment="raw", failure=failure, tstamp=tstamp,
                                    meta={"template": "t", "suite": "mt_bench"}))


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    fc = write(tmp_path / "fastchat.jsonl", [
        fastchat_row(1, 1, -1, 10.0, judgment="$ERROR$"),  # superseded by the rerun below
        fastchat_row(1, 2, 4, 11.0),
        fastchat_row(2, 1, 8, 12.0),
        fastchat_row(2, 2, -1, 13.0, judgment="no verdict"),  # a failure that stays
        fastchat_row(1, 1, 6, 20.0),  # the rerun
    ])
    ou = write(tmp_path / "ours.jsonl", [
        ours(1, 1, 9.0), ours(1, 2, None, "no_rating"), ours(2, 1, 7.0), ours(2, 2, 5.0),
        ours(3, 1, 2.0), ours(3, 2, None, "timeout"),
    ])
    return fc, ou


def test_table_per_model_with_failures_and_duplicates(files):
    table = summarize(load_frame(files)).table
    fc = table.loc[("m-fc", "gpt-4")]
    assert (fc["turn_1"], fc["turn_2"], fc["overall"]) == (7.0, 4.0, 6.0)  # (6+8)/2, 4, 18/3
    assert (fc["judged"], fc["failures"], fc["duplicates"]) == (4, 1, 1)
    ou = table.loc[("m-ours", "judge-x")]
    assert (ou["turn_1"], ou["turn_2"], ou["overall"]) == (6.0, 5.0, pytest.approx(23 / 4))
    assert (ou["judged"], ou["failures"], ou["duplicates"]) == (6, 2, 0)


def test_means_agree_with_plain_pandas_on_unique_rows(files):
    frames = [pd.read_json(f, lines=True) for f in files]
    df = pd.concat(frames, ignore_index=True)
    df["judge"] = df["judge"].str[0]
    unique = df.sort_values("tstamp", kind="stable").drop_duplicates(
        ["model", "judge", "question_id", "turn"], keep="last")
    scored = unique[unique["score"].notna() & (unique["score"] != -1)]
    expected = scored.groupby(["model", "turn"])["score"].mean().unstack()
    table = summarize(load_frame(files)).table.droplevel("judge")
    for model in expected.index:
        for turn in expected.columns:
            assert table.loc[model, f"turn_{turn}"] == pytest.approx(expected.loc[model, turn])


def test_failures_keep_their_reasons(files):
    frame = load_frame(files)
    reasons = frame[frame["failure"].notna()].set_index(["model", "question_id", "turn"])
    assert reasons["failure"].to_dict() == {
        ("m-fc", 1, 1): "api_error", ("m-fc", 2, 2): "no_rating",
        ("m-ours", 1, 2): "no_rating", ("m-ours", 3, 2): "timeout",
    }


def test_row_round_trip_keeps_everything():
    j = Judgment(81, "m", "gpt-4", 2, 7.0, user_prompt="u", judgment="j", scores=(6.0, 8.0),
                 tstamp=3.5, meta={"template": "single-v1-multi-turn", "spread": 2.0})
    row = judgment_to_row(j)
    assert row["judge"] == ["gpt-4", "single-v1-multi-turn"] and row["failure"] is None
    assert judgment_from_row(json.loads(json.dumps(row))) == j


def test_a_file_of_failures_only_shows_no_mean(tmp_path):
    path = write(tmp_path / "f.jsonl", [ours(1, 1, None, "timeout"), ours(1, 2, None, "timeout")])
    row = summarize(load_frame([path])).table.iloc[0]
    assert (row["judged"], row["failures"]) == (2, 2)
    assert pd.isna(row["overall"])


def test_bad_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ours(1, 1, 5.0)) + "\n" + json.dumps({"model": "m"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a judgment row"):
        read_judgments(path)


def test_cli_prints_the_table_and_the_notes(files, capsys):
    assert main(["show", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "turn_1" in out and "failures" in out and "duplicates" in out
    assert "m-fc (gpt-4): failures: no_rating 1" in out
    assert "m-fc (gpt-4): 1 duplicate row(s) dropped, the latest kept (1 of the dropped were " \
           "failures): q1/t1" in out
    assert "m-ours (judge-x): failures: no_rating 1, timeout 1" in out


def test_cli_on_the_real_fastchat_file(shared_data, capsys):
    path = shared_data / "mt_bench" / "gpt-4_single_llama3-8b-instruct.jsonl"
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("Meta-Llama-3-8B-Instruct"))
    assert line.split()[2:] == ["8.275", "7.263", "7.769", "160", "0", "10"]


def test_cli_missing_file(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nope.jsonl")]) == 1
    assert capsys.readouterr().err.startswith("error: no such judgment file: ")


ANSWER_ROW = {"question_id": 81, "model_id": "m", "choices": [{"index": 0, "turns": ["x"]}]}


@pytest.mark.parametrize(("content", "message"), [
    ("", r"error: no judgments in \S+f.jsonl$"),
    ("\n\n", r"error: no judgments in \S+f.jsonl$"),
    ('{"model": "m"\n', r"error: \S+f.jsonl:1: invalid JSON \("),
    (json.dumps(ours(1, 1, 5.0)) + "\n" + json.dumps({"model": "m", "judge": "j", "turn": 1}),
     r"error: \S+f.jsonl:2: not a judgment row: missing field 'question_id', 'score' "
     r"\(needs question_id, model, judge, turn, score\)$"),
    (json.dumps(ANSWER_ROW), r"error: \S+f.jsonl:1: not a judgment row: a model-answer row "
                             r"\(model_id, choices\); give the judgments `resure judge` wrote$"),
    ("[1, 2]", r"error: \S+f.jsonl:1: not a judgment row: a JSON list, expected an object$"),
    (json.dumps({**ours(1, 1, 5.0), "turn": "two"}),
     r"error: \S+f.jsonl:1: not a judgment row: bad value \(invalid literal"),
])
def test_cli_bad_file_one_line_exit_1(tmp_path, capsys, content, message):
    path = tmp_path / "f.jsonl"
    path.write_text(content)
    assert main(["show", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.match(message, captured.err.splitlines()[0])
    assert "Traceback" not in captured.err


def test_cli_directory(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 1
    assert (capsys.readouterr().err.splitlines()[0]
            == f"error: {tmp_path} is a directory, expected a judgment JSONL file")


def test_lower_is_better_is_noted_for_reference_nll(tmp_path, capsys):
    nll = judgment_to_row(Judgment(1, "m+r1-final", "reference_nll", 1, 2.5))
    path = write(tmp_path / "nll.jsonl", [nll, ours(1, 1, 7.0)])
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "lower is better for judge reference_nll; higher for the others" in out
    assert main(["show", str(write(tmp_path / "llm.jsonl", [ours(1, 1, 7.0)]))]) == 0
    assert "lower is better" not in capsys.readouterr().out
