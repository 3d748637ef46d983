"""The ``backup`` and ``restore`` subcommands: one verified archive of all of BrainLoc's state.

    python -m brainloc backup [--out DIR]      (default DIR: <data dir>/backups)
    python -m brainloc restore ARCHIVE

``backup`` copies the SQLite database with SQLite's online backup API, which gives a
consistent snapshot while the app keeps running (copying ``brainloc.db`` by hand while it runs
can miss what is still in ``brainloc.db-wal``), checks the copy (``PRAGMA integrity_check``,
its schema revision, its row counts), and writes it with a manifest of SHA-256 sums into
``brainloc-backup-<UTC time>.tar.gz`` (mode 0600: it holds every patient scan). The archive
appears only when it is complete. The sign-in cookie's signing key is left out on purpose:
whoever holds it can make a "remember me" cookie for any account, past its password and
two-step sign-in, so a copy of a backup must not carry it. After a restore the app makes a new
key, and everyone signs in again once.

``restore`` checks every file of an archive against its manifest, and that this version knows
the archive's schema, before it writes anything; it refuses a data directory that already has a
database, then puts the database into ``BRAINLOC_DATA_DIR`` and migrates it to this version's
schema (a ``cookie_key`` in an archive of an earlier version is not restored). Stop the app
before restoring, and start it afterwards.

PostgreSQL deployments back up with ``pg_dump``; both commands say so.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sqlite3
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.request import pathname2url

from sqlalchemy.engine import make_url

from brainloc import __version__
from brainloc.settings import (
    COOKIE_KEY_FILE,
    DATABASE_FILE,
    data_dir_from,
    database_url_from,
    private_data_dir,
    sqlite_url,
)

MANIFEST_FILE = "manifest.json"
#: Tables counted in the manifest and in the command's summary.
COUNTED_TABLES = (
    "users",
    "analyses",
    "analysis_slices",
    "note_versions",
    "issued_reports",
    "audit_events",
)


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why, for the operator."""


@dataclass(frozen=True)
class Snapshot:
    """What one backup holds."""

    path: Path
    schema_revision: str
    counts: dict[str, int]


def _sqlite_path(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(
            "this deployment's database is not an SQLite file (DATABASE_URL); back up "
            "PostgreSQL with pg_dump"
        )
    return Path(url.database)


def _read_only_uri(path: Path) -> str:
    """An SQLite URI opening ``path`` read-only; its characters are escaped (a ``#`` or ``?``
    in a folder name would otherwise end the file name)."""
    return "file:" + pathname2url(str(path)) + "?mode=ro"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_database(path: Path) -> tuple[str, dict[str, int]]:
    """Integrity-check an SQLite copy; its Alembic revision and row counts.

    Raises:
        BackupError: the file is damaged or is not a BrainLoc database.
    """
    return _check_connection(sqlite3.connect(_read_only_uri(path), uri=True))


def check_database_bytes(data: bytes) -> tuple[str, dict[str, int]]:
    """:func:`check_database` on a database file's bytes, read in memory (nothing is written).

    Raises:
        BackupError: the bytes are damaged or are not a BrainLoc database.
    """
    image = bytearray(data)
    # A database in WAL mode (bytes 18-19 of its header are 2) cannot be opened from memory;
    # this in-memory copy is read in rollback-journal mode (1) instead, the pages unchanged.
    if image[18:20] == b"\x02\x02":
        image[18:20] = b"\x01\x01"
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(bytes(image))
    except sqlite3.DatabaseError as error:
        connection.close()
        raise BackupError(f"not a readable SQLite database ({error})") from None
    return _check_connection(connection)


def _check_connection(connection: sqlite3.Connection) -> tuple[str, dict[str, int]]:
    """The checks of :func:`check_database`; closes ``connection``."""
    try:
        verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BackupError(f"the database copy failed SQLite's integrity check: {verdict}")
        try:
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            # The table names are our constants, not input.
            counts = {
                table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in COUNTED_TABLES
            }
        except sqlite3.DatabaseError as error:
            raise BackupError(f"not a BrainLoc database ({error})") from None
    except sqlite3.DatabaseError as error:
        raise BackupError(f"not a readable SQLite database ({error})") from None
    finally:
        connection.close()
    if revision is None:
        raise BackupError("not a BrainLoc database (no schema revision)")
    return str(revision[0]), counts


def create_backup(
    database_url: str, data_dir: Path, out_dir: Path, *, now: datetime | None = None
) -> Snapshot:
    """Write a checked archive of the database into ``out_dir`` (not the cookie key)."""
    source = _sqlite_path(database_url)
    if not source.is_file():
        raise BackupError(f"there is no database at {source} to back up")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    target = out_dir / f"brainloc-backup-{stamp}.tar.gz"
    if target.exists():
        raise BackupError(f"{target} exists already")
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".brainloc-backup-") as work:
        work_dir = Path(work)
        copy = work_dir / DATABASE_FILE
        src = sqlite3.connect(_read_only_uri(source), uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        revision, counts = check_database(copy)
        files = [copy]
        manifest = {
            "created_at": now.isoformat(),
            "brainloc_version": __version__,
            "schema_revision": revision,
            "counts": counts,
            "files": {path.name: _sha256(path) for path in files},
        }
        partial = work_dir / "archive.partial"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            data = json.dumps(manifest, indent=2).encode("utf-8")
            info = tarfile.TarInfo(MANIFEST_FILE)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
            for path in files:
                tar.add(path, arcname=path.name, filter=_private)
        os.replace(partial, target)
    return Snapshot(target, revision, counts)


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


def read_archive(archive: Path) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the files of a backup archive, every file checked against the
    manifest's SHA-256; nothing outside the known names is read.

    Raises:
        BackupError: not a BrainLoc backup, or a file is missing, extra or altered.
    """
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            known = {MANIFEST_FILE, DATABASE_FILE, COOKIE_KEY_FILE}
            if MANIFEST_FILE not in members or not set(members) <= known:
                raise BackupError(f"{archive} is not a BrainLoc backup")
            if not all(m.isfile() for m in members.values()):
                raise BackupError(f"{archive} holds something other than plain files")
            contents = {name: tar.extractfile(m).read() for name, m in members.items()}
    except (OSError, tarfile.TarError, EOFError) as error:
        raise BackupError(f"cannot read {archive}: {error}") from None
    try:
        manifest = json.loads(contents.pop(MANIFEST_FILE))
        expected: Mapping[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{archive} has a damaged manifest") from None
    if set(expected) != set(contents) or DATABASE_FILE not in contents:
        raise BackupError(f"{archive} does not hold the files its manifest lists")
    for name, data in contents.items():
        if hashlib.sha256(data).hexdigest() != expected[name]:
            raise BackupError(
                f"{name} in {archive} does not match its checksum: altered or damaged"
            )
    return manifest, contents


def restore_backup(archive: Path, env: Mapping[str, str]) -> tuple[Path, dict]:
    """Put a checked archive's database into the configured data directory, then migrate it.
    Returns the data directory and the manifest.

    Raises:
        BackupError: a bad archive, one from a newer version, a database already in place, or
            a non-default database URL; nothing is written then.
    """
    data_dir = data_dir_from(env)
    target = data_dir / DATABASE_FILE
    configured = env.get("DATABASE_URL")
    if configured and _sqlite_path(configured).resolve() != target:
        raise BackupError(
            f"restore writes {target}, but DATABASE_URL points elsewhere; unset it or restore "
            "by hand"
        )
    manifest, contents = read_archive(archive)
    if any(target.parent.glob(f"{DATABASE_FILE}*")):
        raise BackupError(
            f"{data_dir} already has a database; stop the app, move that folder aside, and "
            "restore into an empty one"
        )
    revision, _ = check_database_bytes(contents[DATABASE_FILE])
    from db.migrate import known_revisions

    if revision not in known_revisions():
        raise BackupError(
            f"the archive's database has schema revision {revision}, which this version of "
            "BrainLoc does not know: it was made by a newer version; restore it with that "
            "version or a later one"
        )
    # Every check passed: only now is the data directory made (0700).
    private_data_dir(data_dir)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".restore-") as work:
        staged = Path(work) / DATABASE_FILE
        descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(contents[DATABASE_FILE])
        os.replace(staged, target)
    from db.migrate import upgrade_head

    upgrade_head(sqlite_url(target))
    return data_dir, manifest


def _summary(counts: Mapping[str, int]) -> str:
    return (
        f"{counts.get('users', 0)} account(s), {counts.get('analyses', 0)} analysis(es), "
        f"{counts.get('issued_reports', 0)} report(s), "
        f"{counts.get('audit_events', 0)} audit event(s)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``backup`` and ``restore`` to the ``python -m brainloc`` parser."""
    backup = subparsers.add_parser(
        "backup",
        help="write a checked archive of the database (safe while the app runs)",
        description=(
            "Copy the SQLite database with SQLite's online backup API, check the copy, and "
            "write it with a SHA-256 manifest into one archive (mode 0600). The sign-in "
            "cookie key is left out: a restored server makes a new one, so old sign-ins end."
        ),
    )
    backup.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the archive (default: backups/ in the data directory; copy it off "
        "the machine)",
    )
    backup.set_defaults(func=run_backup)
    restore = subparsers.add_parser(
        "restore",
        help="restore an archive made by backup into an empty data directory",
        description=(
            "Check an archive made by 'backup' and restore it into BRAINLOC_DATA_DIR, which "
            "must not hold a database yet. Stop the app first."
        ),
    )
    restore.add_argument("archive", type=Path, help="a brainloc-backup-*.tar.gz file")
    restore.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    """0 and a summary on success, 2 and a message otherwise. The settings are read without
    side effects: a mistyped data directory is reported, not created (nor a cookie key in it).
    """
    try:
        data_dir = data_dir_from(os.environ)
        database_url = database_url_from(os.environ, data_dir)
        out = args.out if args.out is not None else data_dir / "backups"
        snapshot = create_backup(database_url, data_dir, out)
    except (BackupError, ValueError, OSError, sqlite3.Error) as error:
        print(f"error: backup failed: {error}", file=sys.stderr)
        return 2
    size_mb = snapshot.path.stat().st_size / 1e6
    print(f"Backup written: {snapshot.path} ({size_mb:.1f} MB)")
    print(f"  {_summary(snapshot.counts)}; schema {snapshot.schema_revision}")
    print("  The sign-in cookie key is not in it (it would sign anyone in): after a restore,")
    print("  everyone signs in again once.")
    print("Keep it as safe as the database: it holds every patient scan.")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """0 and a summary on success, 2 and a message otherwise (nothing written then)."""
    try:
        data_dir, manifest = restore_backup(args.archive, os.environ)
    except (BackupError, OSError, sqlite3.Error) as error:
        print(f"error: restore failed: {error}", file=sys.stderr)
        return 2
    print(f"Restored {args.archive} (made {manifest.get('created_at', '?')}) into {data_dir}")
    print(f"  {_summary(manifest.get('counts', {}))}")
    print("Start the app now; accounts sign in with their passwords (and codes) as before.")
    return 0
