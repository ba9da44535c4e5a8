"""`resure show`: per-model score table of judgment files."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "show",
        help="per-model scores of judgment files",
        description="Per-turn and overall mean scores per model from judgment JSONL files "
        "(ours or FastChat's), with the number of failed turns (never averaged) and of "
        "duplicate rows (the latest of each is kept). A note says which judges' scores are "
        "costs (reference_nll: lower is better). Exit status 1 for a missing, empty or "
        "malformed file.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="judgment JSONL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resure.eval.show import load_frame, render, summarize

    missing = [str(f) for f in args.files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"no such judgment file: {', '.join(missing)}")
    # A directory, an empty file or a bad row raises ValueError naming the file (and the
    # line and field): printed as one line, exit 1.
    result = summarize(load_frame(args.files))
    print(render(result))
    return 0
