"""Concurrent vs sequential llm-judge requests, and a rerun with a warm cache.

Runs the ``llm`` judge against the fake OpenAI server of ``tests/fakeserver.py`` with a fixed
added latency per request, first one request at a time, then ``--concurrency`` at a time
(both without cache), and prints the speed-up. Then it judges once with a fresh cache and
again with the warm cache, and prints how many HTTP requests each run sent.

    python bench/judge_concurrency.py [--requests 32] [--latency 0.2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakeserver import FakeOpenAIServer  # noqa: E402

from resure.eval.judges.llm import LLMJudge  # noqa: E402
from resure.eval.types import Answer, EvalItem  # noqa: E402


def workload(n: int) -> tuple[list[EvalItem], list[Answer]]:
    """n single-turn items with distinct answers (so no two requests coincide)."""
    items = [EvalItem("bench", f"q{i}", "chat", (f"Question {i}?",)) for i in range(n)]
    answers = [Answer(f"q{i}", "bench-model", (f"Answer number {i}.",)) for i in range(n)]
    return items, answers


def timed_run(server: FakeOpenAIServer, concurrency: int, n: int, cache=None) -> tuple[float, int]:
    """Wall seconds and HTTP requests of one judging run."""
    items, answers = workload(n)
    judge = LLMJudge("bench-judge", base_url=server.base_url, concurrency=concurrency,
                     max_retries=0, cache=cache)
    before = server.count
    start = time.perf_counter()
    judgments = judge.judge(items, answers)
    elapsed = time.perf_counter() - start
    failed = [j for j in judgments if j.failure is not None]
    if failed:
        raise SystemExit(f"{len(failed)} judgments failed, e.g. {failed[0].failure}")
    return elapsed, server.count - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with FakeOpenAIServer(responder=lambda body: "Fine.\nRating: [[6]]",
                          latency=args.latency) as server:
        seq_s, seq_calls = timed_run(server, 1, args.requests)
        par_s, par_calls = timed_run(server, args.concurrency, args.requests)
        print(f"{args.requests} requests, {args.latency * 1000:.0f} ms added latency each")
        print(f"  sequential (concurrency 1): {seq_s:6.2f} s  ({seq_calls} HTTP requests)")
        print(f"  concurrency {args.concurrency}:            {par_s:6.2f} s  "
              f"({par_calls} HTTP requests)")
        print(f"  speed-up: {seq_s / par_s:.1f}x (ideal {args.concurrency}x)")

        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "judge_cache.sqlite"
            cold_s, cold_calls = timed_run(server, args.concurrency, args.requests, cache)
            warm_s, warm_calls = timed_run(server, args.concurrency, args.requests, cache)
        print(f"  cold cache: {cold_s:6.2f} s, {cold_calls} HTTP requests")
        print(f"  warm cache: {warm_s:6.2f} s, {warm_calls} HTTP requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
