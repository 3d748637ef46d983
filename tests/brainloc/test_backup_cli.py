"""``python -m brainloc backup`` and ``restore`` on real SQLite databases."""

from __future__ import annotations

import io
import sqlite3
import stat
import tarfile

import pytest

from brainloc import accounts
from brainloc.backup import BackupError, check_database_bytes, create_backup, read_archive
from brainloc.cli import main
from brainloc.settings import get_settings
from db import clinical
from db.engine import get_engine, session_scope
from tests.conftest import TEST_PASSWORD
from tests.db.clinical_factory import make_analysis

# The backup copies the SQLite file; on PostgreSQL it refuses and names pg_dump (tested below).
pytestmark = pytest.mark.sqlite_only


def _backup(tmp_path, capsys):
    assert main(["backup", "--out", str(tmp_path / "backups")]) == 0, capsys.readouterr().err
    (archive,) = (tmp_path / "backups").glob("brainloc-backup-*.tar.gz")
    return archive


def _switch_data_dir(monkeypatch, path):
    """Point the settings at another data directory, as a new server would be."""
    get_engine.cache_clear()
    monkeypatch.setenv("BRAINLOC_DATA_DIR", str(path))
    get_settings.cache_clear()


def _images(owner_id: int, analysis_id: int) -> list[tuple[bytes, str]]:
    with session_scope() as session:
        rows = clinical.get_slices(session, analysis_id=analysis_id, owner_id=owner_id)
        return [(row.image, row.image_sha256) for row in rows]


def test_a_backup_restores_into_an_empty_data_directory(
    app_env, make_account, tmp_path, capsys, monkeypatch
):
    user = make_account("alice")
    with session_scope() as session:
        analysis = make_analysis(session, user.id, reference="CASE-9", probabilities=(0.9, 0.1))
    scans = _images(user.id, analysis.id)
    archive = _backup(tmp_path, capsys)
    assert "1 account(s), 1 analysis(es)" in capsys.readouterr().out
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    manifest, contents = read_archive(archive)
    # The cookie key would let whoever holds a copy sign in as anyone: it stays out.
    assert set(contents) == {"brainloc.db"}
    assert manifest["counts"]["analysis_slices"] == 2
    assert not list((tmp_path / "backups").glob(".brainloc-backup-*"))  # no leftovers

    _switch_data_dir(monkeypatch, tmp_path / "restored")
    assert main(["restore", str(archive)]) == 0, capsys.readouterr().err
    assert "Restored" in capsys.readouterr().out
    assert stat.S_IMODE((tmp_path / "restored").stat().st_mode) == 0o700  # as a new one is
    assert get_settings().cookie_key != app_env.cookie_key  # a new key: everyone signs in again
    with session_scope() as session:
        assert accounts.check_login(session, username="alice", password=TEST_PASSWORD).ok
        stored = clinical.get_analysis(session, analysis_id=analysis.id, owner_id=user.id)
        assert stored.case_reference == "CASE-9"
    assert _images(user.id, analysis.id) == scans  # every scan byte for byte
    # A second restore over the restored database is refused.
    assert main(["restore", str(archive)]) == 2
    assert "already has a database" in capsys.readouterr().err


def test_a_backup_taken_while_a_write_is_uncommitted_holds_only_committed_data(
    app_env, make_account, tmp_path
):
    make_account("alice")
    writer = sqlite3.connect(app_env.database_url.removeprefix("sqlite:///"))
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE users SET full_name = 'half-written' WHERE username = 'alice'")
    try:
        snapshot = create_backup(app_env.database_url, app_env.data_dir, tmp_path / "b")
    finally:
        writer.rollback()
        writer.close()
    _, contents = read_archive(snapshot.path)
    assert snapshot.counts["users"] == 1
    assert b"half-written" not in contents["brainloc.db"]


def _rewrite(archive, tmp_path, change) -> str:
    """A copy of ``archive`` with ``change(name, data) -> data`` applied to each member."""
    copy = tmp_path / "altered.tar.gz"
    with tarfile.open(archive, "r:gz") as source, tarfile.open(copy, "w:gz") as target:
        for member in source.getmembers():
            data = change(member.name, source.extractfile(member).read())
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return str(copy)


def test_restore_refuses_bad_archives_and_writes_nothing(
    app_env, make_account, tmp_path, capsys, monkeypatch
):
    make_account("alice")
    archive = _backup(tmp_path, capsys)
    altered = _rewrite(
        archive, tmp_path, lambda name, data: data + b"x" if name == "brainloc.db" else data
    )
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    _switch_data_dir(monkeypatch, tmp_path / "empty")
    for path, message in (
        (altered, "brainloc.db in "),
        (str(junk), "cannot read"),
        (str(tmp_path / "missing.tar.gz"), "cannot read"),
    ):
        assert main(["restore", path]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "empty" / "brainloc.db").exists()
    with pytest.raises(BackupError, match="does not match its checksum"):
        read_archive(altered)


def test_without_out_the_backup_goes_into_the_data_directory(app_env, make_account, capsys):
    make_account("alice")
    assert main(["backup"]) == 0, capsys.readouterr().err
    (archive,) = (app_env.data_dir / "backups").glob("brainloc-backup-*.tar.gz")
    assert str(archive) in capsys.readouterr().out
    assert stat.S_IMODE((app_env.data_dir / "backups").stat().st_mode) == 0o700


def test_backup_refuses_postgresql_and_a_missing_database(tmp_path):
    with pytest.raises(BackupError, match="pg_dump"):
        create_backup("postgresql+psycopg://u@db/brainloc", tmp_path, tmp_path / "b")
    with pytest.raises(BackupError, match="no database"):
        create_backup(f"sqlite:///{tmp_path / 'none.db'}", tmp_path, tmp_path / "b")
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").iterdir())


def test_an_archive_of_a_newer_version_is_refused_and_nothing_written(
    app_env, make_account, tmp_path, capsys, monkeypatch
):
    make_account("alice")
    live = sqlite3.connect(app_env.database_url.removeprefix("sqlite:///"))
    with live:
        live.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    live.close()
    archive = _backup(tmp_path, capsys)
    _switch_data_dir(monkeypatch, tmp_path / "empty")
    assert main(["restore", str(archive)]) == 2
    err = capsys.readouterr().err
    assert "0099_from_the_future" in err and "newer version" in err and "Traceback" not in err
    assert not (tmp_path / "empty").exists()  # not even the data directory
    with pytest.raises(BackupError, match="not a readable SQLite database"):
        check_database_bytes(b"notes, not a database\n" * 200)


def test_backup_of_a_mistyped_or_misconfigured_data_directory_creates_nothing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    typo = tmp_path / "dta"
    _switch_data_dir(monkeypatch, typo)
    assert main(["backup"]) == 2
    assert capsys.readouterr().err == (
        f"error: backup failed: there is no database at {typo / 'brainloc.db'} to back up\n"
    )
    assert not typo.exists()  # neither the folder nor a cookie key in it
    monkeypatch.setenv("DATABASE_URL", "foo")
    assert main(["backup"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: backup failed: DATABASE_URL is not a database URL")
    assert not typo.exists()


def test_data_directories_with_url_characters_in_their_names(tmp_path, capsys, monkeypatch):
    # '#', '?' and '%' end or escape a URL's path; each must stay part of the folder's name.
    source = tmp_path / "clinic #1? 100%20 data"
    _switch_data_dir(monkeypatch, source)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("BRAINLOC_BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("BRAINLOC_ADMIN_PASSWORD", TEST_PASSWORD)
    assert main(["create-admin", "--username", "chief", "--email", "c@clinic.example"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]  # nothing beside it
    assert stat.S_IMODE((source / "brainloc.db").stat().st_mode) == 0o600
    assert main(["backup"]) == 0, capsys.readouterr().err
    (archive,) = (source / "backups").glob("brainloc-backup-*.tar.gz")
    assert "1 account(s)" in capsys.readouterr().out
    target = tmp_path / "restored #2? %41"
    _switch_data_dir(monkeypatch, target)
    assert main(["restore", str(archive)]) == 0, capsys.readouterr().err
    assert (target / "brainloc.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, target.name])
    with session_scope() as session:
        assert accounts.check_login(session, username="chief", password=TEST_PASSWORD).ok
    get_engine.cache_clear()
    get_settings.cache_clear()
