"""`resure sweep`: run (or list) a benchmark sweep described by a TOML file.

Exit codes: 0 on success, 2 for an invalid sweep file or arguments (nothing has run), 1
when a stage fails (finished stages are kept; rerunning resumes after them).
"""

from __future__ import annotations

import argparse
import logging
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

logger = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of fine-tuning runs, evaluate them and report score vs data",
        description="Expand the grid of a sweep file (model x method x mixture x size x "
        "seed), then prepare data, train, generate, judge and aggregate. Every stage is "
        "cached: a rerun does only what is missing.",
    )
    p.add_argument("config", help="sweep file (TOML), e.g. bench/default.toml")
    p.add_argument("--results", default="results",
                   help="results folder (tables, plots, report.md; default: results)")
    p.add_argument("--work", default=None,
                   help="folder for pools and checkpoints (default: RESULTS/work, git-ignored)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, list the runs, what is done and the estimated time left")
    p.add_argument("--suite-dir", action="append", default=[], metavar="SUITE=DIR",
                   help="data folder of a suite (repeatable); wins over the sweep file")
    p.set_defaults(func=run)


def _suite_dirs(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        label, sep, path = v.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"--suite-dir expects SUITE=DIR, got {v!r}")
        out[label] = path
    return out


def run(args: argparse.Namespace) -> int:
    from resure.sweep.config import ConfigError, load_config, require_model_dirs
    from resure.sweep.runner import Sweep, summarize_status

    try:
        config = load_config(args.config)
        if not args.dry_run:  # a dry run lists the runs before the model is downloaded
            require_model_dirs(config)
        suite_dirs = _suite_dirs(args.suite_dir)
        unknown = sorted(set(suite_dirs) - {s.label for s in config.suites})
        if unknown:
            raise ValueError(f"--suite-dir names unknown suite(s) {unknown}; the sweep has "
                             f"{[s.label for s in config.suites]}")
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    sweep = Sweep(config, args.results, args.work, suite_dirs)
    if args.dry_run:
        print(summarize_status(sweep.status()))
        return EXIT_OK
    try:
        report = sweep.run()
    except Exception:
        logger.exception("sweep %s stopped; finished stages are kept, rerun to resume",
                         config.name)
        return EXIT_FAILED
    print(f"report: {report}")
    return EXIT_OK
