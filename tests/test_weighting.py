"""Weighting methods on tiny hand-made batches; z-scores checked with numpy two-pass."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from resure.weighting import TurnBatch, get_weighting

EPS = 1e-6


def batch(losses, present=None, tokens=None, step=0) -> TurnBatch:
    """A TurnBatch from nested lists; all turns present and 1 token each by default."""
    losses = torch.tensor(losses, dtype=torch.float32)
    present = torch.ones_like(losses, dtype=torch.bool) if present is None else present
    present = torch.as_tensor(present, dtype=torch.bool)
    tokens = present.long() if tokens is None else torch.tensor(tokens)
    ids = tuple(f"s{i}" for i in range(losses.shape[0]))
    return TurnBatch(losses=losses, present=present, tokens=tokens, sample_ids=ids, step=step)


def z_score(history, value) -> float:
    """Reference z-score: numpy two-pass mean and sample std (ddof=1)."""
    h = np.asarray(history, dtype=np.float64)
    return (np.float32(value) - h.mean()) / (h.std(ddof=1) + EPS)


# History fed in a first step: position 0 sees 1, 2, 3; position 1 sees 2, 3, 4.
HISTORY = [[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]]
POS0, POS1 = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]


def warmed(**options):
    method = get_weighting("resure", warmup=3, **options)
    first = method.weights(batch(HISTORY))
    assert torch.equal(first, torch.ones(3, 2))  # nothing is judged before warm-up
    return method


# ----------------------------------------------------------------- uniform


def test_uniform_is_the_presence_mask():
    present = [[True, True, False], [True, False, False]]
    w = get_weighting("uniform").weights(batch([[5.0, 1.0, 0.0], [9.0, 0.0, 0.0]], present))
    assert w.dtype == torch.float32
    assert w.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    assert get_weighting("none").weights(batch([[1.0]])).tolist() == [[1.0]]


# ----------------------------------------------------------------- resure


def test_hard_mode_matches_hand_computed_z_scores():
    method = warmed(mode="hard", threshold=1.0)
    w = method.weights(batch([[2.5, 10.0], [3.5, 3.5]]))
    z = [[z_score(POS0, 2.5), z_score(POS1, 10.0)], [z_score(POS0, 3.5), z_score(POS1, 3.5)]]
    expected = [[0.0 if zz > 1.0 else 1.0 for zz in row] for row in z]
    assert expected == [[1.0, 0.0], [0.0, 1.0]]  # 0.5, 7.0 / 1.5, 0.5 standard deviations
    assert w.tolist() == expected


def test_soft_mode_decays_exponentially_beyond_the_threshold():
    method = warmed(mode="soft", threshold=1.0, temperature=2.0)
    w = method.weights(batch([[2.5, 10.0], [3.5, 3.5]]))
    z01, z10 = z_score(POS1, 10.0), z_score(POS0, 3.5)
    expected = torch.tensor([[1.0, math.exp(-(z01 - 1) / 2)], [math.exp(-(z10 - 1) / 2), 1.0]])
    torch.testing.assert_close(w, expected)


def test_soft_is_the_default_with_temperature_one():
    options = get_weighting("resure").options()
    assert options["mode"] == "soft" and options["temperature"] == 1.0
    assert options["threshold"] == 2.0 and options["warmup"] == 20
    assert options["update"] == "after" and options["one_sided"] is True


def test_warmup_is_respected_per_position():
    # Position 0 has 3 losses (ready at warmup=3); position 1 gets only 2 in the history.
    method = get_weighting("resure", warmup=3, mode="hard", threshold=1.0)
    method.weights(batch(HISTORY, present=[[True, True], [True, True], [True, False]]))
    w = method.weights(batch([[9.0, 9.0]]))
    assert w.tolist() == [[0.0, 1.0]]
    # one more loss at position 1 makes it ready (update="after": this step is still unjudged)
    assert method.diagnostics()["positions"][1]["count"] == 3
    assert method.weights(batch([[1.0, 30.0]])).tolist() == [[1.0, 0.0]]


def test_update_before_judges_against_statistics_including_the_batch():
    after = warmed(mode="soft", threshold=1.0, update="after")
    before = warmed(mode="soft", threshold=1.0, update="before")
    new = [[6.0, 3.0]]
    w_after, w_before = after.weights(batch(new)), before.weights(batch(new))
    z_after, z_before = z_score(POS0, 6.0), z_score([*POS0, 6.0], 6.0)
    assert w_after[0, 0].item() == pytest.approx(math.exp(-(z_after - 1)), rel=1e-6)
    assert w_before[0, 0].item() == pytest.approx(math.exp(-(z_before - 1)), rel=1e-6)
    assert w_before[0, 0] > w_after[0, 0]  # the outlier widened its own yardstick
    # both end with the same statistics
    assert after.state_dict() == before.state_dict()


def test_update_before_counts_the_batch_towards_warmup():
    method = get_weighting("resure", warmup=4, mode="hard", threshold=1.0, update="before")
    method.weights(batch(HISTORY))
    assert method.weights(batch([[9.0, 2.0]])).tolist() == [[0.0, 1.0]]
    method = get_weighting("resure", warmup=4, mode="hard", threshold=1.0, update="after")
    method.weights(batch(HISTORY))
    assert method.weights(batch([[9.0, 2.0]])).tolist() == [[1.0, 1.0]]


def test_absent_turns_get_zero_and_do_not_enter_the_statistics():
    method = warmed(mode="hard", threshold=1.0)
    present = [[True, False], [False, False]]
    w = method.weights(batch([[2.0, 50.0], [50.0, 50.0]], present))
    assert w.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    counts = [row["count"] for row in method.diagnostics()["positions"][:2]]
    assert counts == [4, 3]


def test_cascade_multiplies_weights_along_the_turns():
    history = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]]
    plain = get_weighting("resure", warmup=3, threshold=1.0, temperature=0.5)
    cascade = get_weighting("resure", warmup=3, threshold=1.0, temperature=0.5, cascade=True)
    for m in (plain, cascade):
        m.weights(batch(history))
    # sample 0: turn 0 abnormal, later turns normal; sample 1: turn 2 absent
    new = [[4.0, 3.0, 3.5], [2.0, 5.0, 0.0]]
    present = [[True, True, True], [True, True, False]]
    w_plain = plain.weights(batch(new, present))
    w_casc = cascade.weights(batch(new, present))
    w0 = math.exp(-(z_score([1, 2, 3], 4.0) - 1) / 0.5)
    w11 = math.exp(-(z_score([2, 3, 4], 5.0) - 1) / 0.5)
    torch.testing.assert_close(w_plain, torch.tensor([[w0, 1.0, 1.0], [1.0, w11, 0.0]]))
    torch.testing.assert_close(w_casc, torch.tensor([[w0, w0, w0], [1.0, w11, 0.0]]))


def test_cascade_skips_absent_gaps():
    method = warmed(mode="hard", threshold=1.0, cascade=True)
    w = method.weights(batch([[9.0, 0.0, 2.0]], present=[[True, False, True]]))
    # position 2 has no statistics yet (weight 1 on its own), but the dropped first turn
    # zeroes it through the absent second one
    assert w.tolist() == [[0.0, 0.0, 0.0]]


def test_sample_level_uses_the_most_abnormal_turn():
    method = warmed(mode="soft", threshold=1.0, level="sample")
    w = method.weights(batch([[2.5, 5.0], [2.0, 3.0]], present=[[True, True], [True, False]]))
    worst = max(z_score(POS0, 2.5), z_score(POS1, 5.0))
    w0 = math.exp(-(worst - 1))
    torch.testing.assert_close(w, torch.tensor([[w0, w0], [1.0, 0.0]]))


def test_one_sided_ignores_low_losses_and_two_sided_does_not():
    one = warmed(mode="hard", threshold=1.0)
    two = warmed(mode="hard", threshold=1.0, one_sided=False)
    low = [[-5.0, 3.0]]
    assert one.weights(batch(low)).tolist() == [[1.0, 1.0]]
    assert two.weights(batch(low)).tolist() == [[0.0, 1.0]]
    assert "loss_below" in two.diagnostics()["positions"][0]
    assert "loss_below" not in one.diagnostics()["positions"][0]


def test_min_weight_floors_present_turns_only():
    method = warmed(mode="hard", threshold=1.0, min_weight=0.25)
    w = method.weights(batch([[9.0, 9.0]], present=[[True, False]]))
    assert w.tolist() == [[0.25, 0.0]]


def test_positions_past_the_cap_share_the_last_statistics():
    method = get_weighting("resure", warmup=3, mode="hard", threshold=1.0, max_positions=2)
    method.weights(batch(HISTORY))
    # column 2 is pooled with column 1: its stats are POS1
    w = method.weights(batch([[2.0, 3.0, 4.9], [2.0, 3.0, 4.0]]))
    assert z_score(POS1, 4.9) > 1.0 > z_score(POS1, 4.0)
    assert w.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]


def test_nonfinite_losses_inf_dropped_nan_kept_and_counted(caplog):
    method = warmed(mode="hard", threshold=1.0)
    w = method.weights(batch([[math.inf, math.nan]], step=7))
    assert "step 7: 2 non-finite turn losses" in caplog.text
    assert w.tolist() == [[0.0, 1.0]]
    positions = method.diagnostics()["positions"]
    assert [p["nonfinite"] for p in positions[:2]] == [1, 1]
    assert [p["count"] for p in positions[:2]] == [3, 3]


def test_diagnostics_report_the_loss_threshold_and_last_step():
    method = warmed(mode="hard", threshold=1.5)
    method.weights(batch([[9.0, 3.0]]))
    diag = method.diagnostics()
    assert diag["threshold"] == 1.5
    assert diag["turns"] == 2 and diag["judged"] == 2 and diag["down_weighted"] == 1
    assert diag["mean_weight"] == 0.5
    pos0 = [*POS0, 9.0]
    expected = np.mean(pos0) + 1.5 * (np.std(pos0, ddof=1) + EPS)
    assert diag["positions"][0]["loss_above"] == pytest.approx(expected)
    assert diag["positions"][3]["loss_above"] is None
    json.dumps(diag)  # loggable as JSON


def test_state_round_trip_gives_identical_next_weights():
    rng = np.random.default_rng(0)
    stream = [rng.gamma(2.0, 1.0, size=(4, 3)).tolist() for _ in range(6)]
    options = dict(warmup=5, threshold=1.0, cascade=True)
    original = get_weighting("resure", **options)
    for losses in stream[:4]:
        original.weights(batch(losses))
    resumed = get_weighting("resure", **options)
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    for losses in stream[4:]:
        expected = original.weights(batch(losses))
        assert torch.equal(resumed.weights(batch(losses)), expected)
    assert (expected < 1).any()  # the comparison covers judged turns


def test_bad_state_is_refused():
    method = get_weighting("resure")
    with pytest.raises(ValueError, match="must have the key 'stats'"):
        method.load_state_dict({"buffer": []})
    other = get_weighting("resure", max_positions=3).state_dict()
    with pytest.raises(ValueError, match="state has max_positions 3"):
        method.load_state_dict(other)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mode": "hard", "temperature": 2.0}, "temperature applies only to mode='soft'"),
        ({"level": "sample", "cascade": True}, "cascade=True applies only to level='turn'"),
        ({"mode": "median"}, "mode must be one of 'soft', 'hard'; got 'median'"),
        ({"level": "dialogue"}, "level must be one of 'turn', 'sample'"),
        ({"update": "during"}, "update must be one of 'after', 'before'"),
        ({"warmup": 1}, r"warmup must be an integer >= 2; got 1"),
        ({"threshold": 0}, r"threshold must be a number in \(0.0, inf\)"),
        ({"temperature": -1.0}, r"temperature must be a number in \(0.0, inf\)"),
        ({"min_weight": 1.5}, r"min_weight must be a number in \[0.0, 1.0\]"),
        ({"max_positions": 0}, "max_positions must be an integer >= 1"),
        ({"cascade": "yes"}, "cascade must be True or False"),
        ({"treshold": 1.0}, "unknown option 'treshold'.*did you mean 'threshold'"),
    ],
)
def test_resure_refuses_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_weighting("resure", **options)


# ----------------------------------------------------------------- loss truncation


def test_sample_loss_is_token_weighted_and_quantile_cuts_the_top():
    method = get_weighting("loss_truncation", drop_frac=0.25, warmup=1, window=100)
    losses = [[1.0, 4.0], [2.0, 0.0], [0.5, 0.5], [3.0, 3.0]]
    tokens = [[3, 1], [2, 0], [1, 1], [1, 1]]
    present = [[True, True], [True, False], [True, True], [True, True]]
    w = method.weights(batch(losses, present, tokens))
    sample_loss = np.array([(3 * 1 + 4) / 4, 2.0, 0.5, 3.0])
    q = np.quantile(sample_loss, 0.75)  # numpy's default is linear interpolation too
    assert method.diagnostics()["threshold"] == pytest.approx(q)
    keep = sample_loss <= q
    assert keep.tolist() == [True, True, True, False]
    expected = torch.tensor(present, dtype=torch.float32) * torch.tensor(keep)[:, None]
    assert torch.equal(w, expected)
    assert method.diagnostics()["dropped"] == 1


def test_loss_truncation_warmup_and_window():
    method = get_weighting("loss_truncation", drop_frac=0.25, warmup=6, window=4)
    first = method.weights(batch([[1.0], [2.0], [3.0], [4.0]]))
    assert torch.equal(first, torch.ones(4, 1))  # 4 of 6 warm-up losses seen
    assert method.diagnostics()["threshold"] is None
    second = method.weights(batch([[10.0], [20.0]]))
    # the buffer keeps the last 4 (3, 4, 10, 20): 0.75 quantile 12.5
    assert method.diagnostics()["threshold"] == pytest.approx(np.quantile([3, 4, 10, 20], 0.75))
    assert second.tolist() == [[1.0], [0.0]]
    assert method.diagnostics()["buffer_size"] == 4 and method.diagnostics()["seen"] == 6


def test_loss_truncation_state_round_trip_gives_identical_next_weights():
    rng = np.random.default_rng(1)
    stream = [rng.gamma(2.0, 1.0, size=(5, 2)).tolist() for _ in range(6)]
    original = get_weighting("loss_truncation", drop_frac=0.2, warmup=8, window=12)
    for losses in stream[:3]:
        original.weights(batch(losses))
    resumed = get_weighting("loss_truncation", drop_frac=0.2, warmup=8, window=12)
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    dropped = 0
    for losses in stream[3:]:
        expected = original.weights(batch(losses))
        assert torch.equal(resumed.weights(batch(losses)), expected)
        dropped += int((expected == 0).sum())
    assert dropped > 0


def test_loss_truncation_nonfinite_and_absent_samples(caplog):
    method = get_weighting("loss_truncation", drop_frac=0.5, warmup=1)
    present = [[True], [True], [True], [False]]
    w = method.weights(batch([[1.0], [math.inf], [math.nan], [0.0]], present, step=3))
    assert "step 3: 2 non-finite sample losses" in caplog.text
    assert w.tolist() == [[1.0], [0.0], [1.0], [0.0]]
    diag = method.diagnostics()
    assert diag["nonfinite"] == 2 and diag["seen"] == 1 and diag["samples"] == 3


def test_loss_truncation_refuses_bad_input():
    with pytest.raises(ValueError, match=r"drop_frac must be a number in \(0.0, 1.0\); got 1"):
        get_weighting("loss_truncation", drop_frac=1)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        get_weighting("loss_truncation", window=0)
    with pytest.raises(ValueError, match="unknown option 'drop'.*did you mean 'drop_frac'"):
        get_weighting("loss_truncation", drop=0.1)
    method = get_weighting("loss_truncation")
    with pytest.raises(ValueError, match="sample 's1' has present turns but no supervised"):
        method.weights(batch([[1.0], [2.0]], tokens=[[1], [0]]))
    small = get_weighting("loss_truncation", window=2)
    with pytest.raises(ValueError, match="more than window=2"):
        small.load_state_dict({"buffer": [1.0, 2.0, 3.0], "seen": 3, "nonfinite": 0})
    with pytest.raises(ValueError, match="must have keys buffer, seen, nonfinite"):
        small.load_state_dict({"stats": {}})


def test_options_are_resolved_and_json_serialisable():
    for name in ("uniform", "resure", "loss_truncation"):
        method = get_weighting(name)
        assert json.loads(json.dumps(method.options())) == method.options()
    assert get_weighting("loss_truncation").options() == {
        "drop_frac": 0.1,
        "warmup": 100,
        "window": 1000,
    }
    assert get_weighting("resure", mode="hard").options()["temperature"] is None


# ----------------------------------------------------------------- distributed


def _distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = {}
        for name, options in DISTRIBUTED_METHODS.items():
            method = get_weighting(name, **options)
            weights = [method.weights(batch(losses[rank::world])) for losses in STREAM]
            result[name] = {"state": method.state_dict(), "weights": torch.stack(weights).tolist()}
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


DISTRIBUTED_METHODS = {
    "resure": {"warmup": 4, "threshold": 1.0},
    "loss_truncation": {"warmup": 4, "drop_frac": 0.25, "window": 10},
}
STREAM = np.random.default_rng(5).gamma(2.0, 1.0, size=(5, 4, 3)).tolist()  # 5 steps of [4, 3]


def test_two_processes_share_statistics_and_match_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name, options in DISTRIBUTED_METHODS.items():
        single = get_weighting(name, **options)
        # one process seeing each step's samples in rank order: rank 0's rows, then rank 1's
        expected = [single.weights(batch(s[0::2] + s[1::2])) for s in STREAM]
        assert ranks[0][name]["state"] == ranks[1][name]["state"]
        for r in range(2):
            got = torch.tensor(ranks[r][name]["weights"])  # [steps, 2, 3]
            want = torch.stack([w[2 * r : 2 * r + 2] for w in expected])
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        assert (torch.stack(expected) < 1).any()  # the comparison covers judged samples
        if name == "resure":  # merged in another order: equal up to rounding
            for key in ("count", "mean", "m2"):
                got = torch.tensor(ranks[0][name]["state"]["stats"][key])
                want = torch.tensor(single.state_dict()["stats"][key])
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        else:
            assert ranks[0][name]["state"] == single.state_dict()
