"""The ``demo`` subcommand: a demo practitioner with a few analyses, for presentations.

    python -m brainloc demo --from DIR [--cases 3] [--username demo]

``DIR`` is in the Kaggle "lgg-mri-segmentation" layout (``DIR/kaggle_3m/<case>/<case>_<n>.tif``
or ``DIR/<case>/...``; the README says where to get the dataset). The command creates an
approved practitioner (or reuses it), sets a newly generated password and prints it (the
account must choose its own at the next sign-in: ``users.must_change_password``), then
analyses the first few cases with the installed models and stores each case as one analysis
of that practitioner. Cases it imported before are skipped; a case that cannot be read is
skipped with a message, and when no case could be imported (and none was before) the exit code
is 2. ``--username`` follows the registration rule (:data:`brainloc.accounts.USERNAME_RE`). It
never runs by itself: nothing in the app calls it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from brainloc.accounts import (
    USERNAME_RE,
    USERNAME_RULE,
    end_sign_ins,
    hash_password,
    normalise_username,
    one_time_password,
)
from brainloc.cli import command_settings, migrate_database
from brainloc.kaggle_layout import layout_root, scan_slices
from brainloc.two_step import clear_two_step
from db import clinical
from db import users as user_store
from db.audit import TARGET_USER, record_event
from db.engine import session_scope
from db.models import STATUS_APPROVED, User
from db.types import utc_now

logger = logging.getLogger(__name__)

DEMO_FULL_NAME = "Demo Practitioner"
DEMO_INSTITUTION = "BrainLoc demonstration"
DEMO_CATEGORY = "radiologist"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``python -m brainloc`` parser."""
    parser = subparsers.add_parser(
        "demo",
        help="create a demo practitioner and import a few analyses from a Kaggle-layout folder",
        description=(
            "Create (or reuse) an approved demo practitioner, print a new one-time password, "
            "and import a few cases from a folder in the Kaggle lgg-mri-segmentation layout."
        ),
    )
    parser.add_argument(
        "--from", dest="source", required=True, type=Path, help="folder in the Kaggle layout"
    )
    parser.add_argument("--cases", type=int, default=3, help="how many cases to import (3)")
    parser.add_argument("--username", default="demo", help="the demo account's login (demo)")
    parser.set_defaults(func=run_demo)


def find_cases(root: Path) -> list[tuple[str, list[Path]]]:
    """Case folders of a Kaggle-layout folder with their scan slices in order
    (masks left out); cases without slices are skipped."""
    base = layout_root(root)
    cases = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        slices = [path for _, path in scan_slices(folder)]
        if slices:
            cases.append((folder.name, slices))
    return cases


def ensure_demo_user(session, *, username: str) -> tuple[User, str]:
    """Create or reuse the approved demo practitioner; returns it with a new one-time password.

    Raises:
        ValueError: the username does not follow the registration rule (:data:`USERNAME_RE`),
            or belongs to an account that is not a demo practitioner.
    """
    username = _checked_username(username)
    password = one_time_password()
    user = user_store.get_user_by_username(session, username=username)
    if user is not None and (user.role != "practitioner" or user.institution != DEMO_INSTITUTION):
        raise ValueError(f"the account '{username}' exists and is not a demo account")
    if user is None:
        category = user_store.get_category_by_code(session, code=DEMO_CATEGORY)
        user = User(
            username=username,
            full_name=DEMO_FULL_NAME,
            email=f"{username}@demo.brainloc.invalid",
            password_hash="",
            role="practitioner",
            status=STATUS_APPROVED,
            category_id=category.id if category else None,
            licence_number="DEMO",
            institution=DEMO_INSTITUTION,
        )
    now = utc_now()
    user.password_hash = hash_password(password)
    user.must_change_password = True  # generated here, so the presenter must replace it
    # Not a reset's one-time password: it is not limited to one sign-in or a day.
    user.one_time_password_expires_at = None
    user.one_time_password_used_at = None
    user.status = STATUS_APPROVED
    user.locked_until = None
    # A new presenter: the previous one's sessions end, and their two-step sign-in (their
    # phone) would stop the new password from signing in.
    end_sign_ins(user, at=now)
    clear_two_step(user)
    user.updated_at = now
    user = user_store.save_user(session, user=user)
    record_event(
        session, action="demo_account", actor_id=user.id, target_type=TARGET_USER, target_id=user.id
    )
    return user, password


def _checked_username(username: str) -> str:
    """The username as stored (trimmed, lower-case), if registration would accept it."""
    name = normalise_username(username)
    if not USERNAME_RE.match(name):
        raise ValueError(f"--username {username!r}: {USERNAME_RULE}")
    return name


def _already_imported(session, owner_id: int, reference: str) -> bool:
    matches = clinical.list_analyses(
        session, owner_id=owner_id, text=reference, entered_in_error=None
    )
    return any(analysis.case_reference == reference for analysis in matches)


def run_demo(args: argparse.Namespace) -> int:
    """Create the demo account and import cases; 0 on success, 2 with a message otherwise
    (also when no case could be imported and none was imported before)."""
    from brainloc.casework import analyze_uploads, save_outcome
    from brainloc.scans import ScanError

    if args.cases < 1:
        print("error: --cases must be at least 1", file=sys.stderr)
        return 2
    try:
        _checked_username(args.username)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.source.is_dir():
        print(f"error: {args.source} is not a folder", file=sys.stderr)
        return 2
    cases = find_cases(args.source)[: args.cases]
    if not cases:
        print(
            f"error: no case folders with <case>_<n>.tif slices in {args.source}", file=sys.stderr
        )
        return 2
    settings = command_settings()
    migrate_database(settings.database_url)
    try:
        from brainloc.inference import Pipeline

        pipeline = Pipeline.load(settings.models_dir)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with session_scope(settings.database_url) as session:
            user, password = ensure_demo_user(session, username=args.username)
            user_id, username = user.id, user.username
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    imported = already = 0
    for reference, paths in cases:
        with session_scope(settings.database_url) as session:
            if _already_imported(session, user_id, reference):
                print(f"{reference}: already imported, skipped")
                already += 1
                continue
        files = [
            (path.name, path.read_bytes()) for path in paths[: settings.scan_limits.max_slices]
        ]
        try:
            outcome = analyze_uploads(pipeline, files)
        except ScanError as error:
            print(f"{reference}: skipped ({error})", file=sys.stderr)
            continue
        with session_scope(settings.database_url) as session:
            save_outcome(session, owner_id=user_id, case_reference=reference, outcome=outcome)
        tumor = len(outcome.summary.tumor_slices)
        print(f"{reference}: {len(files)} slices analysed, {tumor} with tumor")
        imported += 1
    print(f"Demo practitioner: {username}")
    print(f"One-time password: {password}")
    print("Change it on the Account page after signing in. Imported cases:", imported)
    if not imported and not already:
        # The account is ready (its password is printed above), but it has nothing to show.
        print(f"error: no case in {args.source} could be imported", file=sys.stderr)
        return 2
    return 0
