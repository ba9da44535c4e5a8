"""`resure data check FILE`: read a dialogue source and report what is in it and what is wrong.

Exit codes: 0 when every record is valid, 1 when any record is invalid (each one is listed
with its location and rule), 2 when the source cannot be read at all (missing file, unknown
extension, undetectable format, a ``.json`` file that does not parse).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2
BAR_WIDTH = 40
#: Up to this many distinct turn counts get one row each; beyond, rows are powers of two.
MAX_EXACT_ROWS = 12


def register(sub) -> None:
    from resure.data.load import FORMATS

    p = sub.add_parser("data", help="inspect and validate dialogue data")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_sub.add_parser(
        "check",
        help="validate a dialogue file and summarise it",
        description="Validate every record of a dialogue source and summarise it. "
        "Exit 0 if all records are valid, 1 if any is invalid, 2 if the source is unreadable.",
    )
    check.add_argument("source", metavar="FILE", help="a .jsonl/.json file, or chitchat, "
                       "chitchat:train, chitchat:heldout")
    check.add_argument("--format", choices=FORMATS, default=None,
                       help="record format (default: detected from the first record)")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from resure.data import DataError, load_conversations

    try:
        result = load_conversations(args.source, format=args.format, policy="skip")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNREADABLE
    except OSError as e:
        print(f"error: cannot read {args.source}: {e.strerror or e}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(f"source: {result.source}")
    print(f"format: {result.format}")
    print(f"dialogues: {result.num_records}")
    print(f"valid: {len(result.conversations)}")
    print(f"invalid: {len(result.skipped)}")
    _print_turns(Counter(c.num_assistant_turns for c in result.conversations))
    _print_problems(result)
    return EXIT_INVALID if result.skipped else EXIT_OK


def _print_turns(turns: Counter[int]) -> None:
    if not turns:
        print("assistant turns per valid dialogue: none (no valid dialogue)")
        return
    values = sorted(turns.elements())
    print(
        f"assistant turns per valid dialogue: min {values[0]}, "
        f"median {statistics.median(values):g}, max {values[-1]}"
    )
    rows = _histogram(turns)
    largest = max(n for _, n in rows)
    width = max(len(label) for label, _ in rows + [("turns", 0)])
    print(f"  {'turns':>{width}}  {'dialogues':>9}")
    for label, n in rows:
        bar = "#" * max(1, round(BAR_WIDTH * n / largest)) if n else ""
        print(f"  {label:>{width}}  {n:>9}  {bar}")


def _histogram(turns: Counter[int]) -> list[tuple[str, int]]:
    """One row per turn count, or power-of-two bins (1, 2, 3-4, 5-8, ...) when many."""
    if len(turns) <= MAX_EXACT_ROWS:
        return [(str(k), turns[k]) for k in sorted(turns)]
    rows: list[tuple[str, int]] = []
    low, high = 1, 1
    while low <= max(turns):
        n = sum(v for k, v in turns.items() if low <= k <= high)
        rows.append((str(low) if low == high else f"{low}-{high}", n))
        low, high = high + 1, 2 * high
    return rows


def _print_problems(result) -> None:
    if not result.skipped:
        return
    counts = ", ".join(f"{rule} {n}" for rule, n in result.skipped_by_rule().items())
    print(f"invalid records by rule: {counts}")
    for problem in result.skipped:
        print(f"  {problem.message()}")
