"""Suite selection flags shared by ``resure generate`` and ``resure judge``.

Both commands must load the same items from the same suite options, so they declare and
parse these flags here, once.
"""

from __future__ import annotations

import argparse


def add_suite_arguments(p: argparse.ArgumentParser) -> None:
    """``--suite``, ``--data-dir``, ``--download`` and ``--suite-option KEY=VALUE``."""
    p.add_argument("--suite", required=True, help="suite name, e.g. mt_bench_101")
    p.add_argument("--data-dir", help="directory of the suite's files (else its env variable)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing suite files from their public URLs (needs network)")
    p.add_argument("--suite-option", action="append", default=[], metavar="KEY=VALUE",
                   help="suite option, e.g. limit_per_task=5 or max_turns=4 (repeatable; "
                        "give judge the ones given to generate)")


def suite_options(args: argparse.Namespace) -> dict:
    """The suite's constructor options from ``--suite-option`` and ``--download``."""
    options = parse_options(args.suite_option)
    if args.download:
        options["download"] = True
    return options


def parse_options(pairs: list[str]) -> dict:
    """``["limit_per_task=5", "tasks=x"]`` -> ``{"limit_per_task": 5, "tasks": "x"}``
    (integers and floats converted)."""
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--suite-option {pair!r}: expected KEY=VALUE")
        options[key.replace("-", "_")] = _number(value)
    return options


def _number(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
