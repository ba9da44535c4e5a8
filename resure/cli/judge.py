"""`resure judge`: grade an answer file turn by turn and write judgment JSONL."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from resure.cli.suite_args import add_suite_arguments, suite_options

logger = logging.getLogger(__name__)

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


def register(sub) -> None:
    p = sub.add_parser(
        "judge",
        help="grade answers per turn (LLM judge or reference judges)",
        description="Grade every turn of every answer and write judgments as FastChat "
        "judgment JSONL with a failure column. Prints how many turns were judged, "
        "failed (by reason) and served from the cache.",
    )
    add_suite_arguments(p)
    p.add_argument("--answers", nargs="+", default=[], metavar="FILE",
                   help="FastChat model-answer JSONL file(s)")
    p.add_argument("--judge", default="llm", help="llm, reference_similarity, reference_nll")
    p.add_argument("--output", required=True, type=Path, help="judgment JSONL to write")
    p.add_argument("--judge-model", help="judge model name (llm) or model for other judges")
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
                   help="extra judge constructor option; VALUE parsed as JSON when it can be")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resure.eval.judging import run_judging

    # One line per request from the HTTP library would drown the counts.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        summary = run_judging(
            suite=args.suite,
            data_dir=args.data_dir,
            answer_paths=args.answers,
            judge=args.judge,
            judge_options=judge_options(args),
            output=args.output,
            suite_options=suite_options(args),
        )
    except (ValueError, FileNotFoundError) as e:  # bad data or options: the message says which
        raise SystemExit(f"resure judge: {e}") from e
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
        return 1
    return 0


def judge_options(args: argparse.Namespace) -> dict:
    """Constructor options of the chosen judge from the flags."""
    extra = dict(_parse_option(o, "--judge-option") for o in args.judge_option)
    if args.judge != "llm":
        ignored = [f"--{k.replace('_', '-')}" for k in LLM_DEFAULTS if getattr(args, k) is not None]
        if args.cache is not None or args.no_cache:
            ignored.append("--cache/--no-cache")
        if ignored:
            logger.warning("%s only apply to --judge llm; ignored", ", ".join(ignored))
        if args.judge_model:
            extra.setdefault("model", args.judge_model)
        return extra
    if not args.judge_model:
        raise SystemExit("--judge llm needs --judge-model (the model name on the server)")
    if args.cache is not None and args.no_cache:
        raise SystemExit("--cache and --no-cache clash; give one of them")
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
        raise SystemExit(f"{flag} {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
