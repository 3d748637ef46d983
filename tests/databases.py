"""Throwaway PostgreSQL for the tests, so that what runs on SQLite is shown to run on a server.

BrainLoc stores everything through SQLModel, in SQLite by default and in PostgreSQL when
``DATABASE_URL`` names one. The test suite runs every test that touches the database on both
(``tests/conftest.py``: the ``database_backend`` parameter). For PostgreSQL it starts one
private server for the whole run with the installed server programs (Debian's ``postgresql``
package; ``make test`` installs it): a fresh cluster in a temporary folder, reachable only
through a Unix socket in that folder (no TCP port), without durability (``fsync=off``: the
cluster is deleted at the end). Each test gets a database of its own.

The server refuses to run as root; when the tests run as root, it runs as the ``postgres``
account the package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

#: The cluster's superuser; the tests connect as it through the socket (trust authentication).
SUPERUSER = "brainloc_test"


def server_programs() -> Path | None:
    """The folder holding the newest installed ``initdb`` and ``pg_ctl``, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """One private PostgreSQL cluster: :meth:`start`, :meth:`create_database`, :meth:`stop`."""

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        # Short path: a Unix socket's path is limited to about 100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="brainloc-pg-"))
        self.data = self.root / "data"
        self._run_as: dict[str, int] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "PostgreSQL refuses to run as root and there is no 'postgres' account to run "
                    "it as (Debian's postgresql package creates one)"
                ) from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid}
        self._admin: sqlalchemy.Engine | None = None

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [str(self.programs / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._run_as,
        )
        if result.returncode:
            raise RuntimeError(f"{command[0]} failed:\n{result.stdout}\n{result.stderr}")

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server (psycopg 3, socket in root)."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.root}"

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-k {self.root} -c listen_addresses= -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
            "-o", options, "start",
        )  # fmt: skip
        self._admin = sqlalchemy.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, ending any connection a test left open."""
        name = make_url(url).database
        with self._admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.dispose()
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
