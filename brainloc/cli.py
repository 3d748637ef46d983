"""The ``python -m brainloc`` command line: one argparse parser, one subcommand per module.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code; one that cannot
go on (a wrong setting, an unusable data directory or database) may raise
:class:`CommandError`, which :func:`main` prints as ``error: <message>`` with exit code 2.
Modules that are not in this checkout yet are skipped, so the dispatcher works while features
land.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from brainloc.log_format import stderr_handler

#: Subcommand modules, in the order their commands are listed in ``--help``.
SUBCOMMAND_MODULES = (
    "brainloc.accounts_cli",  # create-admin, reset-password, reset-two-step
    "brainloc.batch",  # analyze
    "brainloc.demo",  # demo
    "brainloc.backup",  # backup, restore
)


class CommandError(Exception):
    """A subcommand that cannot go on: :func:`main` prints ``error: <message>`` on stderr and
    returns exit code 2."""


def command_settings():
    """The settings for a subcommand; a wrong setting or an unusable data folder raises
    :class:`CommandError` with the setting's own message."""
    from brainloc.settings import get_settings

    try:
        return get_settings()
    except ValueError as error:
        raise CommandError(str(error)) from None


def migrate_database(url: str) -> None:
    """Bring the database to this version's schema, or raise :class:`CommandError` when it is
    not a database, cannot be opened, or was made by a newer version (nothing changed then)."""
    from db.migrate import DatabaseStateError, upgrade_known

    try:
        upgrade_known(url)
    except DatabaseStateError as error:
        raise CommandError(str(error)) from None


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


#: PostgreSQL's SQLSTATEs for a lock waited on too long (``lock_timeout``) and a deadlock.
_POSTGRESQL_LOCK_STATES = ("55P03", "40P01")


def _kept_locked(error: OperationalError) -> bool:
    """Whether ``error`` says the database was kept locked by another process: SQLite's
    "database is locked" after the busy timeout, PostgreSQL's lock timeout or deadlock."""
    if getattr(error.orig, "sqlstate", None) in _POSTGRESQL_LOCK_STATES:
        return True
    return "locked" in str(error.orig)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # A file name in a record (a folder of uploads) cannot forge another (brainloc.log_format).
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        handlers=[stderr_handler("%(levelname)s %(name)s: %(message)s")],
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        if not _kept_locked(error):
            raise
        # Another process (the app saving a large case, a backup) held SQLite's write lock
        # past the busy timeout, or on PostgreSQL a row past the server's lock_timeout. The
        # command's transaction was rolled back: one line, not a traceback of the SQL with the
        # new password's hash in its parameters.
        print(
            "error: the database is busy (another process kept it locked too long); nothing "
            "was changed, try again",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: one line, not a traceback. Each command writes its files whole or not at all
        # (and database changes in one transaction), so an interrupted run leaves no half file.
        print("\nerror: interrupted", file=sys.stderr)
        return 130
