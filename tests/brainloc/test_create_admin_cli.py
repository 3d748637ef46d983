"""``python -m brainloc create-admin`` run as a real subprocess on a temporary data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session

from brainloc.accounts import verify_password
from db.engine import make_engine
from db.users import get_user_by_username

REPO = Path(__file__).resolve().parents[2]


def _run(data_dir: Path, *args: str, password: str | None = None, stdin: str = ""):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINLOC_", "DATABASE_"))}
    env |= {"BRAINLOC_DATA_DIR": str(data_dir), "BRAINLOC_BCRYPT_ROUNDS": "4"}
    if password is not None:
        env["BRAINLOC_ADMIN_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "brainloc", "create-admin", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_create_admin_creates_an_approved_admin(tmp_path):
    done = _run(
        tmp_path, "--username", "Chief", "--email", "chief@clinic.org", "--full-name",
        "Dr Chief", password="a-strong-admin-pass",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Created administrator 'chief'" in done.stdout
    engine = make_engine(f"sqlite:///{tmp_path / 'brainloc.db'}")
    try:
        with Session(engine) as session:
            admin = get_user_by_username(session, username="chief")
            assert (admin.role, admin.status, admin.full_name) == ("admin", "approved", "Dr Chief")
            assert verify_password("a-strong-admin-pass", admin.password_hash)
    finally:
        engine.dispose()


def test_create_admin_refuses_weak_passwords_and_duplicates(tmp_path):
    weak = _run(tmp_path, "--username", "chief", "--email", "c@clinic.org", password="short")
    assert weak.returncode == 2
    assert "at least 10 characters" in weak.stderr and "Traceback" not in weak.stderr
    ok = _run(tmp_path, "--username", "chief", "--email", "c@clinic.org", password="long-enough-1")
    assert ok.returncode == 0
    again = _run(
        tmp_path, "--username", "chief", "--email", "c@clinic.org", password="long-enough-1"
    )
    assert again.returncode == 2
    assert "already taken" in again.stderr and "already exists" in again.stderr


def test_create_admin_without_a_password_source_fails_clearly(tmp_path):
    done = _run(tmp_path, "--username", "chief", "--email", "c@clinic.org")
    assert done.returncode == 2
    assert "BRAINLOC_ADMIN_PASSWORD" in done.stderr
    assert not (tmp_path / "brainloc.db").exists() or "Created" not in done.stdout


def test_create_admin_requires_username_and_email(tmp_path):
    done = _run(tmp_path, "--username", "chief", password="long-enough-1")
    assert done.returncode == 2 and "--email" in done.stderr
