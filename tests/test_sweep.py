"""A whole sweep on the tiny model: results, caching, dry run, and a run killed midway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from resure.sweep import Sweep, load_config
from resure.sweep.runner import summarize_status
from resure.sweep.stages import find_markers

TINY_SWEEP = """
[sweep]
name = "tiny"
sizes = [4, 8]
seeds = [0, 1]

[models.tiny]
name = "{model}"

[data]
source = "chitchat:train"
min_assistant_turns = 2
max_assistant_turns = 2

[mixtures.clean]

[mixtures.noisy]
corrupt_fraction = 0.5
kinds = {{ noise = 1, repetition = 1 }}

[methods.uniform]

[methods.resure]
options = {{ threshold = 1.0, warmup = 2 }}

[train]
max_length = 96
batch_size = 4
lr = 5e-3
num_threads = 1

[suites.chitchat_heldout]
limit = 4
options = {{ max_turns = 2 }}

[suites.chitchat_heldout.judges]
reference_nll = {{ sizes = "all" }}

[analysis]
bootstrap_resamples = 50
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


@pytest.fixture(scope="module")
def tiny_sweep_file(tiny_model_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "tiny.toml"
    path.write_text(TINY_SWEEP.format(model=tiny_model_dir), encoding="utf-8")
    return path


def sweep_command(config: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "resure", "sweep", str(config), "--results", str(results)]


@pytest.fixture(scope="module")
def finished(tiny_sweep_file, tmp_path_factory) -> Path:
    """The tiny sweep run once, uninterrupted, in a subprocess."""
    results = tmp_path_factory.mktemp("uninterrupted")
    proc = subprocess.run(sweep_command(tiny_sweep_file, results), env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def test_tables_report_and_plots(finished, tiny_sweep_file):
    config = load_config(tiny_sweep_file)
    scores = pd.read_csv(finished / "scores.csv")
    # 2 methods x 2 mixtures x 2 seeds x (2 sizes + the shared base point)
    assert len(scores) == 2 * 2 * 2 * 3
    assert not scores.duplicated(["method", "mixture", "size", "seed"]).any()
    assert (scores["n_items"] == 4).all() and (scores["direction"] == "lower").all()
    base = scores[scores["size"] == 0]
    assert base["mean"].nunique() == 1  # one base model for every curve
    board = pd.read_csv(finished / "leaderboard.csv")
    assert len(board) == 4 and set(board["mixture"]) == {"clean", "noisy"}
    assert board["rho"].between(-1, 1).all() and (board["n_points"] == 2 * 3).all()
    report = (finished / "report.md").read_text(encoding="utf-8")
    for png in (finished / "plots").glob("*.png"):
        assert f"plots/{png.name}" in report
    assert (finished / "plots" / "curve_chitchat_heldout_reference_nll.png").is_file()
    assert "## Failures" in report
    data = pd.read_csv(finished / "data.csv")
    noisy = data[data["mixture"] == "noisy"]
    assert (noisy["rate"] > 0.2).all() and (data[data["mixture"] == "clean"]["rate"] == 0).all()
    weighting = pd.read_csv(finished / "weighting.csv")
    assert len(weighting) == 8 and (weighting["turns"] > 0).all()
    # Every run has a manifest with seeds, commit, versions and the template hash.
    for run in Sweep(config, finished).plan.all_runs:
        manifest = (finished / "runs" / run.dirname / "manifest.json").read_text()
        for key in ("chat_template_hash", "git", "versions", "seeds", "config"):
            assert f'"{key}"' in manifest


def test_rerun_makes_no_model_calls_and_is_fast(finished, tiny_sweep_file, monkeypatch):
    import resure.models
    import resure.train

    def refuse(*args, **kwargs):
        raise AssertionError("a finished sweep must not load or train a model")

    monkeypatch.setattr(resure.models, "load_model_and_tokenizer", refuse)
    monkeypatch.setattr(resure.train, "train", refuse)
    before = (finished / "leaderboard.csv").read_bytes()
    start = time.perf_counter()
    Sweep(load_config(tiny_sweep_file), finished).run()
    assert time.perf_counter() - start < 20
    assert (finished / "leaderboard.csv").read_bytes() == before


def test_dry_run_lists_runs_state_and_estimate(finished, tiny_sweep_file, tmp_path):
    config = load_config(tiny_sweep_file)
    fresh = Sweep(config, tmp_path / "fresh").status()
    assert len(fresh.runs) == 1 + 2 * 2 * 2 * 2
    # No stage measured yet and the built-in figures are not for the tiny model.
    assert fresh.estimate_s is None and fresh.done == 0
    assert "estimated time left: no estimate" in summarize_status(fresh)
    assert {t.stage.kind for t in fresh.todo} >= {"prepare", "train", "judge:reference_nll"}
    done = Sweep(config, finished).status()
    assert done.todo == [] and done.estimate_s == 0
    proc = subprocess.run([*sweep_command(tiny_sweep_file, finished), "--dry-run"], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "17 runs" in proc.stdout and "left: nothing" in proc.stdout
    assert "estimated time left: 0m00s" in proc.stdout


def test_sweep_killed_midway_resumes_to_the_same_leaderboard(finished, tiny_sweep_file,
                                                             tmp_path):
    results = tmp_path / "killed"
    proc = subprocess.Popen(sweep_command(tiny_sweep_file, results), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        # Kill once the second training pass has finished, in the middle of the sweep.
        while time.time() < deadline and proc.poll() is None:
            trained = [m for m in find_markers(results / "work") if m["kind"] == "train"]
            if len(trained) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (results / "leaderboard.csv").exists()
    rerun = subprocess.run(sweep_command(tiny_sweep_file, results), env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for name in ("leaderboard.csv", "scores.csv", "per_turn.csv"):
        assert (results / name).read_text() == (finished / name).read_text(), name
