"""PositionStats against a plain two-pass numpy mean/variance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from resure.stats import PositionStats


def two_pass(values: np.ndarray, positions: np.ndarray, size: int, ddof: int = 1):
    """Reference: per-position mean and variance by numpy (NaN where undefined)."""
    positions = np.minimum(positions, size - 1)
    mean, var, count = np.full(size, np.nan), np.full(size, np.nan), np.zeros(size, int)
    for k in range(size):
        v = values[(positions == k) & np.isfinite(values)]
        count[k] = v.size
        if v.size:
            mean[k] = v.mean()
        if v.size > ddof:
            var[k] = v.var(ddof=ddof)
    return count, mean, var


def random_stream(seed: int, n: int = 600, offset: float = 0.0, positions: int = 5):
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, positions, size=n)
    values = offset + rng.normal(loc=pos * 0.5, scale=1.0 + pos * 0.1, size=n)
    return values, pos


def feed_in_random_batches(stats: PositionStats, values, positions, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(values)), size=30, replace=False))
    for v, p in zip(np.split(values, cuts), np.split(positions, cuts), strict=True):
        stats.update(torch.from_numpy(v), torch.from_numpy(p))


def assert_matches(stats: PositionStats, values, positions, rtol=1e-12, atol=1e-9):
    size = stats.max_positions
    for ddof in (0, 1):
        count, mean, var = two_pass(values, positions, size, ddof)
        np.testing.assert_array_equal(stats.count.numpy(), count)
        np.testing.assert_allclose(stats.mean().numpy(), mean, rtol=rtol, atol=atol)
        np.testing.assert_allclose(stats.var(ddof).numpy(), var, rtol=rtol, atol=atol)
        np.testing.assert_allclose(stats.std(ddof).numpy(), np.sqrt(var), rtol=rtol, atol=atol)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_batch_splits_match_two_pass(seed):
    values, positions = random_stream(seed)
    stats = PositionStats(5)
    feed_in_random_batches(stats, values, positions, seed + 100)
    assert_matches(stats, values, positions)


def test_single_values_match_two_pass():
    values, positions = random_stream(3, n=200)
    stats = PositionStats(5)
    for v, p in zip(values, positions, strict=True):
        stats.update(torch.tensor([v]), torch.tensor([p]))
    assert_matches(stats, values, positions)


def test_large_offset_is_numerically_stable():
    # A naive sum-of-squares formula loses every digit of a unit variance at 1e6 offset
    # (x**2 ~ 1e12, float64 keeps ~16 digits); the two-pass batch + Chan merge does not.
    values, positions = random_stream(4, n=2000, offset=1e6)
    stats = PositionStats(5)
    feed_in_random_batches(stats, values, positions, 7)
    count, mean, var = two_pass(values, positions, 5)
    np.testing.assert_allclose(stats.mean().numpy(), mean, rtol=1e-14)
    np.testing.assert_allclose(stats.var().numpy(), var, rtol=1e-8)
    naive = np.array(
        [
            (np.sum(values[positions == k] ** 2) - count[k] * mean[k] ** 2) / (count[k] - 1)
            for k in range(5)
        ]
    )
    assert np.max(np.abs(naive / var - 1)) > 1e-6  # shows the test can tell the difference


def test_merge_trees_agree():
    values, positions = random_stream(5, n=800)
    parts = np.array_split(np.arange(800), 8)

    def leaf(idx):
        s = PositionStats(5)
        s.update(torch.from_numpy(values[idx]), torch.from_numpy(positions[idx]))
        return s

    # left fold: ((((a+b)+c)+d)...)
    fold = leaf(parts[0])
    for idx in parts[1:]:
        fold.merge(leaf(idx))
    # balanced tree: ((a+b)+(c+d)) + ((e+f)+(g+h))
    level = [leaf(idx) for idx in parts]
    while len(level) > 1:
        for left, right in zip(level[::2], level[1::2], strict=True):
            left.merge(right)
        level = level[::2]
    for stats in (fold, level[0]):
        assert_matches(stats, values, positions)


def test_merge_into_empty_and_empty_into_full():
    values, positions = random_stream(6, n=50)
    full = PositionStats(5)
    full.update(torch.from_numpy(values), torch.from_numpy(positions))
    empty = PositionStats(5)
    empty.merge(full)
    full.merge(PositionStats(5))
    assert_matches(empty, values, positions)
    assert_matches(full, values, positions)


def test_positions_past_the_cap_are_pooled():
    values = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 60.0])
    positions = np.array([0, 0, 1, 2, 5, 9])
    stats = PositionStats(3)
    stats.update(torch.from_numpy(values), torch.from_numpy(positions))
    assert stats.count.tolist() == [2, 1, 3]
    assert stats.mean()[2].item() == pytest.approx(30.0)
    assert stats.var()[2].item() == pytest.approx(np.var([10.0, 20.0, 60.0], ddof=1))


def test_nonfinite_values_are_ignored_and_counted():
    values = torch.tensor([1.0, float("nan"), 3.0, float("inf"), -float("inf"), 5.0])
    positions = torch.tensor([0, 0, 0, 1, 1, 1])
    stats = PositionStats(2)
    stats.update(values, positions)
    assert stats.count.tolist() == [2, 1]
    assert stats.nonfinite.tolist() == [1, 2]
    assert stats.total_nonfinite == 3
    assert stats.mean().tolist() == [2.0, 5.0]
    assert stats.var()[0].item() == pytest.approx(2.0)


def test_undefined_figures_are_nan_and_ready_selects_defined_ones():
    stats = PositionStats(3)
    stats.update(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 0, 1]))
    assert stats.ready().tolist() == [True, False, False]
    assert stats.ready(min_count=3).tolist() == [False, False, False]
    assert math.isnan(stats.var()[1].item()) and stats.var(ddof=0)[1].item() == 0.0
    assert math.isnan(stats.mean()[2].item())
    snap = stats.snapshot()
    assert snap[1] == {"position": 1, "count": 1, "nonfinite": 0, "mean": 4.0, "std": None}
    assert snap[2]["mean"] is None
    assert snap[0]["std"] == pytest.approx(math.sqrt(0.5))


def test_state_round_trip_through_json_is_exact():
    values, positions = random_stream(8, n=300, offset=1e3)
    stats = PositionStats(5)
    feed_in_random_batches(stats, values, positions, 9)
    stats.update(torch.tensor([math.nan]), torch.tensor([2]))
    restored = PositionStats(5)
    restored.load_state_dict(json.loads(json.dumps(stats.state_dict())))
    for s in (stats, restored):
        s.update(torch.tensor([1.5, 2.5]), torch.tensor([0, 4]))
    assert torch.equal(restored.mean(), stats.mean())
    assert torch.equal(restored.var(), stats.var())
    assert torch.equal(restored.nonfinite, stats.nonfinite)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_positions must be an int >= 1"):
        PositionStats(0)
    stats = PositionStats(2)
    with pytest.raises(ValueError, match="same number of entries"):
        stats.update(torch.ones(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="positions must be >= 0"):
        stats.update(torch.ones(1), torch.tensor([-1]))
    with pytest.raises(ValueError, match="cannot merge PositionStats with max_positions 3"):
        stats.merge(PositionStats(3))
    with pytest.raises(ValueError, match="state has max_positions 3"):
        stats.load_state_dict(PositionStats(3).state_dict())
    with pytest.raises(ValueError, match="ddof must be 0 or 1"):
        stats.var(ddof=2)


def test_all_reduce_is_a_no_op_without_a_process_group():
    stats = PositionStats(2)
    stats.update(torch.tensor([1.0, 3.0]), torch.tensor([0, 0]))
    stats.all_reduce()
    assert stats.count.tolist() == [2, 0]


def _all_reduce_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        values, positions = random_stream(11, n=400)
        mine = np.array_split(np.arange(400), world)[rank]
        stats = PositionStats(5)
        stats.update(torch.from_numpy(values[mine]), torch.from_numpy(positions[mine]))
        stats.update(torch.tensor([math.inf]), torch.tensor([rank]))
        stats.all_reduce()
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(stats.state_dict(), f)
    finally:
        dist.destroy_process_group()


def test_all_reduce_across_two_processes(tmp_path):
    mp.spawn(
        _all_reduce_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    values, positions = random_stream(11, n=400)
    states = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert states[0] == states[1]
    stats = PositionStats(5)
    stats.load_state_dict(states[0])
    assert_matches(stats, values, positions)
    assert stats.nonfinite.tolist() == [1, 1, 0, 0, 0]
