"""The ``python -m brainloc`` command line: one argparse parser, one subcommand per module.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code. Modules that
are not in this checkout yet are skipped, so the dispatcher works while features land.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
from collections.abc import Sequence

#: Subcommand modules, in the order their commands are listed in ``--help``.
SUBCOMMAND_MODULES = (
    "brainloc.accounts_cli",  # create-admin, reset-password, reset-two-step
    "brainloc.batch",  # analyze
    "brainloc.demo",  # demo
    "brainloc.backup",  # backup, restore
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="python -m brainloc",
        description="BrainLoc command line: accounts, batch analysis, demo data, backups.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))
