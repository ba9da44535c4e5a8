"""The ``resure`` command line.

Each sub-command lives in its own module under :mod:`resure.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code. Heavy imports (torch, transformers) happen
inside those callables so that ``resure --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from resure import __version__
from resure.registry import UnknownNameError

logger = logging.getLogger(__name__)

#: Errors that carry a message meant for the user (bad input, missing file, unknown name,
#: failed generation). They are printed as one line; ``-v`` shows the traceback too.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, UnknownNameError,
                                                RuntimeError)

# Order is the order shown in --help.
SUBCOMMAND_MODULES = (
    "resure.cli.data",
    "resure.cli.train",
    "resure.cli.generate",
    "resure.cli.judge",
    "resure.cli.show",
    "resure.cli.sweep",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resure",
        description="Benchmark loss-reweighting methods for multi-turn dialogue fine-tuning.",
    )
    parser.add_argument("--version", action="version", version=f"resure {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # peft (0.21) calls a transformers method that transformers 5 marks deprecated; the
    # warning is about those libraries, not about anything a user of this CLI can change.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                            category=FutureWarning)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        print("(run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
