"""`resure judge`: grade an answer file turn by turn and write judgment JSONL."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from resure.cli.suite_args import add_suite_arguments, suite_options

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Flags that only the llm judge reads, with their defaults for it.
LLM_DEFAULTS = {
    "base_url": None,
    "api_key_env": "OPENAI_API_KEY",
    "concurrency": 8,
    "repeats": 1,
    "timeout": 120.0,
    "max_retries": 3,
    "max_tokens": 2048,
}

EPILOG = """\
judges:
  llm                   an LLM (OpenAI-compatible server) rates each answer turn 1-10;
                        needs --answers and --judge-model (the judge model's name).
  reference_similarity  cosine similarity of answer and reference turns (MiniLM), 1-10;
                        needs --answers.
  reference_nll         mean NLL per token of the suite's reference turns under the
                        evaluated model (lower is better); generates nothing and needs no
                        answers. --judge-model is the evaluated model (directory or known
                        name), --adapter its peft adapter. Dialogues are cut at 2048
                        tokens (--judge-option max_length=N); turns past the cut fail
                        with the reason.

--answers with reference_nll: only the items answered in the files are judged, so the
judgments cover the questions the answers cover. --limit N --seed S picks the same N
items as `resure generate --limit N --seed S`.

exit status: 0 done, 1 failed (bad data, no turn scored), 2 usage error.

example:
  resure judge --suite chitchat_heldout --judge reference_nll \\
      --judge-model smollm2-135m-instruct --adapter runs/r1/final --limit 20 \\
      --output judgments/r1.jsonl
"""


def register(sub) -> None:
    p = sub.add_parser(
        "judge",
        help="grade answers per turn (LLM judge or reference judges)",
        description="Grade every turn of every answer and write judgments as FastChat "
        "judgment JSONL with a failure column. Prints how many turns were judged, "
        "failed (by reason) and served from the cache.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_suite_arguments(p)
    p.add_argument("--answers", nargs="+", default=[], metavar="FILE",
                   help="FastChat model-answer JSONL file(s); with reference_nll they only "
                        "select the items to judge")
    p.add_argument("--limit", type=int,
                   help="judge only this many items (the seeded subset of generate --limit)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the --limit subset (give generate's; default 0)")
    p.add_argument("--judge", default="llm", help="llm, reference_similarity, reference_nll")
    p.add_argument("--output", required=True, type=Path, help="judgment JSONL to write")
    p.add_argument("--judge-model",
                   help="llm: the judge model's name on the server; reference_nll: the "
                        "evaluated model (directory or known name)")
    p.add_argument("--adapter", help="peft adapter directory of the evaluated model "
                   "(reference_nll); same as --judge-option adapter=DIR")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", help="environment variable holding the API key "
                   "(default OPENAI_API_KEY)")
    p.add_argument("--concurrency", type=int, help="requests in flight (default 8)")
    p.add_argument("--repeats", type=int, help="judge calls per turn; median kept (default 1)")
    p.add_argument("--timeout", type=float, help="seconds per request attempt (default 120)")
    p.add_argument("--max-retries", type=int, help="client retries per request (default 3)")
    p.add_argument("--max-tokens", type=int, help="judge reply length limit (default 2048)")
    p.add_argument("--cache", type=Path,
                   help="SQLite judgment cache (default: judge_cache.sqlite beside --output)")
    p.add_argument("--no-cache", action="store_true", help="send every request")
    p.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra judge constructor option, e.g. max_length=4096 or "
                        "batch_size=4; VALUE parsed as JSON when it can be")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resure.eval.judging import run_judging
    from resure.registry import UnknownNameError

    try:
        options, suite_opts = check_usage(args)
    except (ValueError, UnknownNameError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    # One line per request from the HTTP library would drown the counts.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Bad data (answers, suite files) raises ValueError naming file and line: exit 1.
    summary = run_judging(
        suite=args.suite,
        data_dir=args.data_dir,
        answer_paths=args.answers,
        judge=args.judge,
        judge_options=options,
        output=args.output,
        suite_options=suite_opts,
        limit=args.limit,
        seed=args.seed,
    )
    failed = sum(summary.failed.values())
    print(
        f"judged {summary.judged} turns: {summary.scored} scored, {failed} failed, "
        f"{summary.cached} cached"
    )
    for reason, n in summary.failed.items():
        print(f"  failed {reason}: {n}")
    print(f"wrote {args.output}")
    if summary.judged and not summary.scored:
        print("no turn was scored; see the failure reasons above")
        return EXIT_FAILED
    return EXIT_OK


def check_usage(args: argparse.Namespace) -> tuple[dict, dict]:
    """The judge's and the suite's options, checked without loading anything.

    Raises:
        ValueError or UnknownNameError: an unknown judge or suite, options they do not
            take, clashing or missing flags.
    """
    from resure.eval.judges import JUDGES
    from resure.eval.suites import SUITES

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    cls = JUDGES.get(args.judge)
    if cls.needs_answers and not args.answers:
        raise ValueError(f"--judge {args.judge} grades answers: give --answers FILE")
    options = judge_options(args)
    if "model" not in options and _requires(JUDGES, args.judge, "model"):
        raise ValueError(f"--judge {args.judge} needs --judge-model (the evaluated model: a "
                         "directory or known name)")
    JUDGES.check_options(args.judge, options)
    suite_opts = suite_options(args)
    SUITES.check_options(args.suite, suite_opts)
    return options, suite_opts


def _requires(registry, name: str, option: str) -> bool:
    import inspect

    param = inspect.signature(registry.get(name).__init__).parameters.get(option)
    return param is not None and param.default is param.empty


def judge_options(args: argparse.Namespace) -> dict:
    """Constructor options of the chosen judge from the flags (ValueError if they clash)."""
    extra = dict(_parse_option(o, "--judge-option") for o in args.judge_option)
    if args.judge != "llm":
        ignored = [f"--{k.replace('_', '-')}" for k in LLM_DEFAULTS if getattr(args, k) is not None]
        if args.cache is not None or args.no_cache:
            ignored.append("--cache/--no-cache")
        if ignored:
            logger.warning("%s only apply to --judge llm; ignored", ", ".join(ignored))
        if args.judge_model:
            extra.setdefault("model", args.judge_model)
        if args.adapter:
            if "adapter" in extra:
                raise ValueError("--adapter and --judge-option adapter=... clash; give one")
            extra["adapter"] = args.adapter
        return extra
    if args.adapter:
        raise ValueError("--adapter is for judges that run the evaluated model "
                         "(reference_nll); the llm judge grades the answers given")
    if not args.judge_model:
        raise ValueError("--judge llm needs --judge-model (the model name on the server)")
    if args.cache is not None and args.no_cache:
        raise ValueError("--cache and --no-cache clash; give one of them")
    options = {k: v if getattr(args, k) is None else getattr(args, k)
               for k, v in LLM_DEFAULTS.items()}
    options["model"] = args.judge_model
    if not args.no_cache:
        options["cache"] = args.cache or args.output.parent / "judge_cache.sqlite"
    options.update(extra)
    return options


def _parse_option(text: str, flag: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{flag} {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
