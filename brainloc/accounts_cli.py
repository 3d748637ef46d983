"""Account commands for the server's operator.

    python -m brainloc create-admin --username NAME --email EMAIL [--full-name "Full Name"]
    python -m brainloc reset-password --username NAME
    python -m brainloc reset-two-step --username NAME

``create-admin`` is the only way to create the first administrator. Its password comes from
``BRAINLOC_ADMIN_PASSWORD`` or, when that is unset, from an interactive prompt (asked
twice). There are no default credentials.

``reset-password`` prints a one-time password for an account whose owner has forgotten theirs,
the only administrator included; the owner must choose their own at the next sign-in.
Administrators reset practitioners' passwords on the Admin page instead.

``reset-two-step`` turns an account's two-step sign-in off when its owner has lost both the
phone and the recovery codes (the only administrator included); the owner signs in with the
password alone and can set it up again on the Account page.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from sqlmodel import Session

from brainloc.account_admin import reset_password_from_console
from brainloc.accounts import ONE_TIME_PASSWORD_HOURS, AccountError, create_admin
from brainloc.cli import command_settings, migrate_database
from brainloc.two_step import reset_from_console
from db.engine import session_scope

PASSWORD_ENV = "BRAINLOC_ADMIN_PASSWORD"
T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``create-admin``, ``reset-password`` and ``reset-two-step`` to the
    ``python -m brainloc`` parser."""
    parser = subparsers.add_parser(
        "create-admin",
        help="create an approved administrator account",
        description=(
            "Create an approved administrator. The password is read from "
            f"{PASSWORD_ENV}, or asked for interactively when it is not set."
        ),
    )
    parser.add_argument("--username", required=True, help="login name (3-32 characters)")
    parser.add_argument("--email", required=True, help="the administrator's email address")
    parser.add_argument("--full-name", default="", help="display name (default: the username)")
    parser.set_defaults(func=run_create_admin)
    reset = subparsers.add_parser(
        "reset-password",
        help="give an account a one-time password (for a forgotten password)",
        description=(
            "Replace an account's password with a generated one-time password and print it. "
            "The account's sessions and remembered sign-ins end, a lockout is lifted, and the "
            "owner must choose their own password at the next sign-in. Pass it on in person or by "
            "calling back a known number."
        ),
    )
    reset.add_argument("--username", required=True, help="the account's login name")
    reset.set_defaults(func=run_reset_password)
    two_step = subparsers.add_parser(
        "reset-two-step",
        help="turn an account's two-step sign-in off (a lost phone and lost recovery codes)",
        description=(
            "Turn an account's two-step sign-in off, after confirming that the person asking "
            "owns it. The account's sessions and remembered sign-ins end; its password alone "
            "signs it in "
            "until two-step sign-in is set up again."
        ),
    )
    two_step.add_argument("--username", required=True, help="the account's login name")
    two_step.set_defaults(func=run_reset_two_step)


def _read_password() -> str | None:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        print(
            f"error: no password: set {PASSWORD_ENV} or run this command in a terminal",
            file=sys.stderr,
        )
        return None
    try:
        first = getpass.getpass("New administrator password: ")
        second = getpass.getpass("Repeat the password: ")
    except EOFError:  # Ctrl-D at the prompt
        print("\nerror: no password given (end of input); nothing was created", file=sys.stderr)
        return None
    if first != second:
        print("error: the two passwords do not match", file=sys.stderr)
        return None
    return first


def _refused(error: AccountError) -> int:
    """Print each of a refusal's messages on stderr; the exit code 2."""
    for message in error.errors.values():
        print(f"error: {message}", file=sys.stderr)
    return 2


def _on_database(change: Callable[[Session], T]) -> T:
    """Run ``change`` in one transaction on the configured database, migrated first, and
    return its result (rows stay readable afterwards); an :class:`AccountError` it raises
    rolls everything back and propagates. A wrong setting or a database that cannot be used
    raises :class:`brainloc.cli.CommandError`."""
    settings = command_settings()
    migrate_database(settings.database_url)
    with session_scope(settings.database_url) as session:
        return change(session)


def run_create_admin(args: argparse.Namespace) -> int:
    """Create the administrator; 0 on success, 2 with a message on stderr otherwise."""
    password = _read_password()
    if password is None:
        return 2
    try:
        username = _on_database(
            lambda session: (
                create_admin(
                    session,
                    username=args.username,
                    email=args.email,
                    password=password,
                    full_name=args.full_name,
                ).username
            )
        )
    except AccountError as error:
        return _refused(error)
    print(f"Created administrator '{username}'. Sign in at the app's login page.")
    return 0


def run_reset_password(args: argparse.Namespace) -> int:
    """Reset the password; 0 and the one-time password on stdout, or 2 with a message."""
    try:
        user, password = _on_database(
            lambda session: reset_password_from_console(session, username=args.username)
        )
    except AccountError as error:
        return _refused(error)
    print(f"Password of '{user.username}' reset; its sessions and remembered sign-ins have ended.")
    print(f"One-time password: {password}")
    print(
        f"It signs in once, within {ONE_TIME_PASSWORD_HOURS} hours; the account must choose its "
        "own password in that session."
    )
    return 0


def run_reset_two_step(args: argparse.Namespace) -> int:
    """Turn two-step sign-in off; 0 on success, or 2 with a message on stderr."""
    try:
        username = _on_database(
            lambda session: reset_from_console(session, username=args.username).username
        )
    except AccountError as error:
        return _refused(error)
    print(f"Two-step sign-in of '{username}' is off; its sessions and remembered sign-ins ended.")
    print("Its password alone signs it in until it is set up again on the Account page.")
    return 0
