"""``resure generate``: answer a suite's items with a model and write FastChat answers.

Examples::

    resure generate --suite mt_bench_101 --data-dir data/mt_bench_101 \\
        --model smollm2-135m-instruct --adapter runs/x/checkpoints/samples-1000 \\
        --suite-option limit_per_task=5 --max-new-tokens 256
    resure generate --suite mt_eval_followup --backend openai --model my-model \\
        --base-url http://127.0.0.1:8000/v1 --api-key-env MY_KEY

Prints the answers file's path on success. Exit status: 0 done, 1 failed (bad data, too
many failed items), 2 usage error (unknown suite, clashing or unknown options).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from resure.cli.suite_args import add_suite_arguments, suite_options

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

BACKEND_CHOICES = ("hf", "vllm", "openai")


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate answers to a suite's items (FastChat model-answer JSONL)",
        description="Generate answers to a benchmark suite with a model (and adapter). "
        "Without --model-id, answers are named <model>+<adapter run>, e.g. "
        "smollm2-135m-instruct+r1-final for --adapter runs/r1/final. Exit status: 0 done, "
        "1 failed, 2 usage error.",
    )
    add_suite_arguments(p)
    p.add_argument("--limit", type=int,
                   help="answer only this many items (the subset drawn with --seed; judge "
                        "--limit N --seed S picks the same)")
    p.add_argument("--model", required=True,
                   help="model directory or known name; for --backend openai the server's "
                        "model name")
    p.add_argument("--adapter", help="peft adapter directory (hf, vllm)")
    p.add_argument("--model-id", help="model_id written in the answers")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="hf")
    p.add_argument("--base-url", help="OpenAI-compatible server URL (openai)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (openai)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (openai)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per batch (hf)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float,
                   help="sampling temperature for every item (default: the suite's)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-failures", type=int, default=0,
                   help="items allowed to fail (openai) before the command fails")
    p.add_argument("--output", type=Path,
                   help="answers file (default: answers/<suite>/<model_id>.jsonl)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resure.eval.backends import GenerationError, SamplingParams, get_backend
    from resure.eval.generate import generate_answers, select_items
    from resure.registry import UnknownNameError

    try:
        suite = check_usage(args)
    except (ValueError, UnknownNameError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    # From here on, bad suite files or a missing model raise errors naming them: exit 1.
    items = select_items(suite.load(args.data_dir), args.limit, seed=args.seed)
    backend = get_backend(args.backend, **_backend_options(args))
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_p=args.top_p, seed=args.seed)
    output = args.output or Path("answers") / args.suite / f"{backend.model_id}.jsonl"
    try:
        result = generate_answers(args.suite, items, backend, sampling, output,
                                  max_failures=args.max_failures)
    except GenerationError as e:
        logger.error("%s; %d answers written to %s, rerun to retry the failed items",
                     e, len(e.answers), output)
        return EXIT_FAILED
    logger.info("%d answers (%d reused, %d generated, %d failed)", len(result.answers),
                result.reused, result.generated, len(result.failures))
    print(result.path)
    return EXIT_OK


def check_usage(args: argparse.Namespace):
    """The suite, after checking every flag without loading data or models.

    Raises:
        ValueError or UnknownNameError: clashing flags, an unknown suite, options the
            suite or backend does not take.
    """
    from resure.eval.backends import BACKENDS
    from resure.eval.suites import get_suite

    if args.backend == "openai" and args.adapter:
        raise ValueError("--adapter is not supported with --backend openai; serve the adapter "
                         "on the server and pass its model name with --model")
    if args.backend != "openai" and args.base_url:
        raise ValueError(f"--base-url is only used with --backend openai, not {args.backend}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    BACKENDS.check_options(args.backend, _backend_options(args))
    return get_suite(args.suite, **suite_options(args))


def _backend_options(args: argparse.Namespace) -> dict:
    common = {"model": args.model, "model_id": args.model_id}
    if args.backend == "hf":
        return {**common, "adapter": args.adapter, "batch_size": args.batch_size}
    if args.backend == "vllm":
        return {**common, "adapter": args.adapter}
    return {**common, "base_url": args.base_url, "api_key_env": args.api_key_env,
            "concurrency": args.concurrency}
