"""Batched vs one-dialogue-at-a-time generation with the ``hf`` backend.

Answers ``--dialogues`` held-out chit-chat dialogues (golden history, at most
``--max-turns`` turns each) with SmolLM2-135M-Instruct twice: once in batches of
``--batch-size`` prompts (default 32: the whole round at once), once with batch size 1.
Prints the generated tokens per second of each run, their ratio, and how many answers the
two runs share (greedy decoding, so they should agree up to floating-point ties).

    OMP_NUM_THREADS=1 python bench/gen_batching.py [--dialogues 16] [--max-new-tokens 32]

On a shared CPU the figures move with the load of other processes; one thread per run
makes them steadier.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from resure.eval.backends import SamplingParams  # noqa: E402
from resure.eval.backends.hf import HFBackend  # noqa: E402
from resure.eval.suites import get_suite  # noqa: E402
from resure.models import resolve_model  # noqa: E402


def timed(backend: HFBackend, items, sampling) -> tuple[float, int, list]:
    """Seconds, generated tokens and answers of one generation run."""
    backend.generated_tokens = 0
    start = time.perf_counter()
    answers = backend.generate(items, sampling)
    return time.perf_counter() - start, backend.generated_tokens, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    items = get_suite("chitchat_heldout", limit=args.dialogues, max_turns=args.max_turns).load()
    prompts = sum(len(item.turns) for item in items)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    path = resolve_model(args.model)
    batched = HFBackend(path, batch_size=args.batch_size)
    single = HFBackend(path, batch_size=1)
    single.model, batched.model  # noqa: B018  # load both before timing
    timed(single, items[:1], SamplingParams(max_new_tokens=4, temperature=0.0))  # warm-up

    b_s, b_tok, b_ans = timed(batched, items, sampling)
    s_s, s_tok, s_ans = timed(single, items, sampling)
    same = sum(a.turns == b.turns for a, b in zip(b_ans, s_ans, strict=True))
    print(f"{len(items)} dialogues, {prompts} prompts, max_new_tokens={args.max_new_tokens}, "
          f"torch threads={os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"batched (batch size {args.batch_size}): {b_tok} tokens in {b_s:.1f} s = "
          f"{b_tok / b_s:.1f} tokens/s")
    print(f"one at a time:          {s_tok} tokens in {s_s:.1f} s = {s_tok / s_s:.1f} tokens/s")
    print(f"throughput ratio batched/single: {(b_tok / b_s) / (s_tok / s_s):.2f}x (goal >= 3x)")
    print(f"dialogues with identical greedy answers: {same}/{len(items)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
