"""`resure train` on the tiny model, and on the real SmolLM2 with real chitchat data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train import make_convs

from resure.cli import main
from resure.cli.train import parse_method_options
from resure.data import save_conversations


def test_method_options_are_read_as_json_when_they_parse():
    options = parse_method_options(["threshold=2.5", "mode=hard", "cascade=true", "name=\"1\""])
    assert options == {"threshold": 2.5, "mode": "hard", "cascade": True, "name": "1"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_method_options(["threshold"])


def _args(model, data, out, *extra):
    return ["train", "--model", str(model), "--data", str(data), "--output-dir", str(out),
            "--num-threads", "1", *extra]


def test_unknown_method_suggests_a_name(tmp_path, capsys):
    rc = main(_args("m", "d", tmp_path, "--method", "resur"))
    assert rc == 2
    assert "did you mean 'resure'?" in capsys.readouterr().err


def test_unknown_method_option_exits_2(tmp_path, capsys):
    rc = main(_args("m", "d", tmp_path, "--method", "resure", "--method-option", "treshold=1"))
    assert rc == 2
    assert "did you mean 'threshold'?" in capsys.readouterr().err


def test_clashing_options_exit_2(tmp_path, capsys):
    rc = main(_args("m", "d", tmp_path, "--batch-size", "4", "--save-at-samples", "6"))
    assert rc == 2
    assert "multiples of the effective batch size 4" in capsys.readouterr().err


def test_missing_data_file_exits_1(tiny_model_dir, tmp_path, capsys):
    rc = main(_args(tiny_model_dir, tmp_path / "nothing.jsonl", tmp_path / "run"))
    assert rc == 1
    assert "nothing.jsonl" in capsys.readouterr().err


def test_train_on_a_file_and_rerun(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    save_conversations(data, make_convs(8))
    out = tmp_path / "run"
    args = _args(tiny_model_dir, data, out, "--batch-size", "2", "--method", "resure",
                 "--method-option", "warmup=2", "--save-at-samples", "4", "--logging-steps", "1")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"adapter: {out / 'final'}" in printed
    assert f"weighting log: {out / 'weighting_log.jsonl'}" in printed
    assert f"after 4 samples: {out / 'checkpoints' / 'samples-4'}" in printed
    assert (out / "final" / "adapter_model.safetensors").is_file()
    manifest = json.loads((out / "train_config.json").read_text())
    assert manifest["config"]["method_options"] == {"warmup": 2}
    assert manifest["method"]["options"]["warmup"] == 2
    assert manifest["method"]["options"]["threshold"] == 2.0  # resolved default recorded

    assert main(args) == 0
    assert capsys.readouterr().out.startswith("already finished: 4 steps on 8 dialogues")


@pytest.mark.integration
@pytest.mark.parametrize("method", ["resure", "uniform"])
def test_train_smollm2_on_chitchat(smollm2_dir, tmp_path, method, capsys):
    out = tmp_path / method
    args = ["train", "--model", str(smollm2_dir), "--data", "chitchat:train", "--policy", "skip",
            "--num-samples", "8", "--max-length", "128", "--batch-size", "4", "--method", method,
            "--logging-steps", "1", "--output-dir", str(out), "--num-threads", "2"]
    assert main(args) == 0
    assert "adapter:" in capsys.readouterr().out
    final = Path(out / "final")
    assert (final / "adapter_model.safetensors").is_file()
    assert (final / "adapter_config.json").is_file()
    rows = [json.loads(x) for x in (out / "weighting_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["samples_seen"] == 8
    assert all(r["loss"] > 0 and r["turns"] > 0 for r in rows)
    skipped = (out / "skipped.jsonl").read_text().splitlines()
    assert skipped  # the chitchat source has records without an assistant turn
