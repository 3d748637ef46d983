"""``python -m brainloc create-admin`` and ``reset-password`` run as real subprocesses on a
temporary data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

from brainloc.accounts import verify_password
from db.audit import list_events
from db.engine import make_engine
from db.users import get_user_by_username

REPO = Path(__file__).resolve().parents[2]


def _run(
    data_dir: Path,
    *args: str,
    password: str | None = None,
    stdin: str = "",
    command: str = "create-admin",
    env: dict[str, str] | None = None,
):
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINLOC_", "DATABASE_"))}
    env |= {"BRAINLOC_DATA_DIR": str(data_dir), "BRAINLOC_BCRYPT_ROUNDS": "4"} | extra
    if password is not None:
        env["BRAINLOC_ADMIN_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "brainloc", command, *args],
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


def test_reset_password_gives_the_only_administrator_a_one_time_password(tmp_path):
    created = _run(
        tmp_path,
        "--username",
        "chief",
        "--email",
        "c@clinic.org",
        password="forgotten-admin-secret",
    )
    assert created.returncode == 0, created.stderr
    done = _run(tmp_path, "--username", "Chief", command="reset-password")
    assert done.returncode == 0, done.stderr
    password = next(
        line.split(":", 1)[1].strip()
        for line in done.stdout.splitlines()
        if line.startswith("One-time password:")
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'brainloc.db'}")
    try:
        with Session(engine) as session:
            admin = get_user_by_username(session, username="chief")
            assert verify_password(password, admin.password_hash)
            assert not verify_password("forgotten-admin-secret", admin.password_hash)
            assert admin.must_change_password
            (event,) = list_events(session, actions=["password_reset"])
            assert (event.actor_id, event.target_id) == (None, admin.id)
    finally:
        engine.dispose()


def test_reset_password_of_an_unknown_account_fails_clearly(tmp_path):
    done = _run(tmp_path, "--username", "nobody", command="reset-password")
    assert done.returncode == 2
    assert "no account named 'nobody'" in done.stderr and "Traceback" not in done.stderr
    assert "One-time password" not in done.stdout


def _refused(done, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {message}\n" and done.stdout == ""


def test_bad_settings_and_data_directories_are_one_line_errors(tmp_path):
    a_file = tmp_path / "data-as-file"
    a_file.write_text("not a folder")
    admin = ("--username", "chief", "--email", "c@clinic.org")
    done = _run(a_file, *admin, password="long-enough-1")
    _refused(done, f"BRAINLOC_DATA_DIR {a_file} is a file, not a folder")
    done = _run(a_file / "below", "--username", "chief", command="reset-two-step")
    _refused(done, f"BRAINLOC_DATA_DIR {a_file / 'below'} cannot be used: Not a directory")
    fresh = tmp_path / "fresh"
    done = _run(fresh, "--username", "chief", command="reset-password",
                env={"BRAINLOC_COOKIE_HOURS": "abc"})  # fmt: skip
    _refused(done, "BRAINLOC_COOKIE_HOURS must be a number, got 'abc'")
    assert not fresh.exists()  # a wrong setting creates nothing, not even the data folder
    done = _run(fresh, *admin, password="long-enough-1", env={"DATABASE_URL": "foo"})
    assert done.returncode == 2 and done.stderr.startswith(
        "error: DATABASE_URL is not a database URL"
    )
    assert "Traceback" not in done.stderr and not fresh.exists()


def test_a_database_of_a_newer_version_or_not_a_database_is_refused(tmp_path):
    import sqlite3

    admin = ("--username", "chief", "--email", "c@clinic.org")
    assert _run(tmp_path, *admin, password="long-enough-1").returncode == 0
    database = tmp_path / "brainloc.db"
    with sqlite3.connect(database) as live:
        live.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    live.close()
    done = _run(tmp_path, "--username", "chief", command="reset-password")
    _refused(
        done,
        f"the database {database} has schema revision 0099_from_the_future, which this version "
        "of BrainLoc does not know: it was made by a newer version; use that version or a "
        "later one",
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "brainloc.db").write_bytes(b"these are notes, not a database\n" * 200)
    done = _run(other, *admin, password="long-enough-1")
    _refused(done, f"the database {other / 'brainloc.db'} cannot be opened: file is not a database")
    assert (other / "brainloc.db").read_bytes() == b"these are notes, not a database\n" * 200


@pytest.mark.parametrize("key", ["ctrl-d", "ctrl-c"])
def test_end_of_input_at_the_password_prompt_is_a_clean_error(tmp_path, key):
    """Ctrl-D or Ctrl-C at the interactive prompt (a terminal: a pseudo-terminal here)."""
    master, terminal = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINLOC_", "DATABASE_"))}
    env |= {"BRAINLOC_DATA_DIR": str(tmp_path / "data"), "BRAINLOC_BCRYPT_ROUNDS": "4"}
    command = [sys.executable, "-m", "brainloc", "create-admin", "--username", "chief",
               "--email", "c@clinic.org"]  # fmt: skip
    # A new session has no controlling terminal, so getpass reads the pseudo-terminal on stdin.
    # Ctrl-C as a terminal delivers it: a program started in the background of a
    # non-interactive shell (a CI job, nohup) inherits SIGINT ignored; a person's terminal not.
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdin=terminal, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    os.close(terminal)
    try:
        prompt = b""
        while b"password: " not in prompt:  # the prompt comes once the terminal is set up
            chunk = os.read(process.stderr.fileno(), 1024)
            assert chunk, prompt
            prompt += chunk
        if key == "ctrl-d":
            os.write(master, b"\x04")
        else:  # the terminal sends SIGINT to the program in front
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        os.close(master)
    if key == "ctrl-d":
        assert process.returncode == 2
        assert err.decode().strip() == (
            "error: no password given (end of input); nothing was created"
        )
    else:
        assert process.returncode == 130
        assert err.decode().strip() == "error: interrupted"
    assert out == b"" and not (tmp_path / "data").exists()


def _assert_one_busy_line(code: int, capsys) -> None:
    """The command refused with one line, exit code 2, and no traceback or password hash."""
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and "$2b$" not in err + out
    assert err.strip().splitlines() == [
        "error: the database is busy (another process kept it locked too long); nothing was "
        "changed, try again"
    ]
    assert "One-time password" not in out


@pytest.mark.sqlite_only
def test_a_database_kept_locked_by_another_process_is_a_one_line_error(
    make_account, app_env, monkeypatch, capsys
):
    """The app holds SQLite's write lock (saving a large case) past the busy timeout while
    the operator resets a password: the command printed a traceback whose SQL parameters held
    the new password's hash. Now one line, exit code 2, and nothing changed."""
    import sqlite3

    import db.engine
    from brainloc.cli import main
    from db.engine import get_engine

    make_account("chief", role="admin")
    get_engine(app_env.database_url).dispose()
    get_engine.cache_clear()
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 200)  # the test need not wait 10 s
    app = sqlite3.connect(app_env.database_url.removeprefix("sqlite:///"), isolation_level=None)
    app.execute("BEGIN IMMEDIATE")
    try:
        code = main(["reset-password", "--username", "chief"])
    finally:
        app.execute("ROLLBACK")
        app.close()
    _assert_one_busy_line(code, capsys)


@pytest.mark.postgresql_only
def test_an_account_row_kept_locked_on_postgresql_is_a_one_line_error(
    make_account, app_env, capsys
):
    """PostgreSQL's counterpart of SQLite's busy timeout: a server (or role) with a
    ``lock_timeout`` cancels the reset of an account whose row the app holds. The command
    printed a traceback whose SQL parameters held the new password's hash, as on SQLite
    before f69dfc9, whose check knew SQLite's wording only."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from brainloc.cli import main
    from db.engine import get_engine

    chief = make_account("chief", role="admin")
    engine = make_engine(app_env.database_url)
    database = make_url(app_env.database_url).database
    with engine.begin() as connection:
        connection.execute(text(f"ALTER DATABASE \"{database}\" SET lock_timeout = '200ms'"))
    get_engine(app_env.database_url).dispose()  # its sessions take the setting from now on
    try:
        with engine.connect() as app:  # the app deciding on the account meanwhile
            app.execute(text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": chief.id})
            code = main(["reset-password", "--username", "chief"])
            app.rollback()
    finally:
        engine.dispose()
    _assert_one_busy_line(code, capsys)
