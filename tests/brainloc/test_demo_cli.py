"""The ``demo`` subcommand on a synthetic Kaggle-layout folder with the tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import Session

from brainloc.accounts import verify_password
from brainloc.cli import main
from brainloc.settings import get_settings
from db import clinical
from db.engine import get_engine
from db.users import get_user_by_username
from tests.brainloc.scan_factory import encode_tiff, synthetic_slice, tumor_like_slice


def _kaggle_folder(root, cases=("CASE_A_1", "CASE_B_2")):
    for number, case in enumerate(cases):
        folder = root / "kaggle_3m" / case
        folder.mkdir(parents=True)
        for index in (1, 2, 10):  # 10 sorts after 2 only numerically
            image = (
                tumor_like_slice((64, 64), (20, 20, 12))
                if index == 2
                else synthetic_slice((64, 64), seed=index + number)
            )
            (folder / f"{case}_{index}.tif").write_bytes(encode_tiff(image))
            mask = np.zeros((64, 64), np.uint8)
            (folder / f"{case}_{index}_mask.tif").write_bytes(encode_tiff(mask))
    return root


@pytest.fixture
def demo_env(app_env, tiny_models_dir, monkeypatch):
    monkeypatch.setenv("BRAINLOC_MODELS_DIR", str(tiny_models_dir))
    get_settings.cache_clear()
    return get_settings()


def _password(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("One-time password:"))
    return line.split(":", 1)[1].strip()


def test_demo_creates_the_account_imports_cases_and_reuses_it(demo_env, tmp_path, capsys):
    source = _kaggle_folder(tmp_path / "lgg")
    assert main(["demo", "--from", str(source), "--cases", "1"]) == 0
    first = capsys.readouterr().out
    assert "CASE_A_1: 3 slices analysed, 1 with tumor" in first
    with Session(get_engine(demo_env.database_url)) as session:
        user = get_user_by_username(session, username="demo")
        assert user.status == "approved" and user.role == "practitioner"
        assert verify_password(_password(first), user.password_hash)
        assert user.must_change_password  # the printed password is ours, not the presenter's
        (analysis,) = clinical.list_analyses(session, owner_id=user.id)
        rows = clinical.get_slices(session, analysis_id=analysis.id, owner_id=user.id)
        assert [row.source_name for row in rows] == [
            "CASE_A_1_1.tif",
            "CASE_A_1_2.tif",
            "CASE_A_1_10.tif",
        ]
        user_id = user.id
        # The first presenter turned two-step sign-in on with their phone.
        user.totp_secret, user.recovery_code_hashes = "JBSWY3DPEHPK3PXP" * 2, ["x" * 64]
        session.add(user)
        session.commit()

    assert main(["demo", "--from", str(source), "--cases", "2"]) == 0
    second = capsys.readouterr().out
    assert "CASE_A_1: already imported, skipped" in second
    assert "CASE_B_2: 3 slices analysed" in second
    assert _password(second) != _password(first)
    with Session(get_engine(demo_env.database_url)) as session:
        user = get_user_by_username(session, username="demo")
        assert user.id == user_id
        assert verify_password(_password(second), user.password_hash)
        assert not verify_password(_password(first), user.password_hash)
        assert user.must_change_password
        # A new presenter: the first one's sessions end and their phone is not asked for.
        assert user.sessions_ended_at is not None and user.sessions_revoked_at is not None
        assert user.totp_secret is None and user.recovery_code_hashes is None
        assert clinical.count_analyses(session, owner_id=user_id) == 2


def test_demo_refuses_a_folder_without_cases(demo_env, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["demo", "--from", str(tmp_path / "empty")]) == 2
    assert "no case folders" in capsys.readouterr().err
    assert main(["demo", "--from", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_demo_never_takes_over_a_real_account(demo_env, tmp_path, make_account, capsys):
    make_account("demo")
    assert main(["demo", "--from", str(_kaggle_folder(tmp_path / "lgg"))]) == 2
    assert "not a demo account" in capsys.readouterr().err


def test_demo_refuses_a_database_of_a_newer_version(demo_env, database_backend, tmp_path, capsys):
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from db.engine import make_engine

    engine = make_engine(demo_env.database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    # The operator is told which database: the file, or the server's URL without a password.
    database = (
        demo_env.data_dir / "brainloc.db"
        if database_backend == "sqlite"
        else make_url(demo_env.database_url).render_as_string(hide_password=True)
    )
    assert main(["demo", "--from", str(_kaggle_folder(tmp_path / "lgg"))]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: the database {database} has schema revision 0099_from_the_future, which this "
        "version of BrainLoc does not know: it was made by a newer version; use that version or "
        "a later one\n"
    )
    assert captured.out == ""


def test_demo_reports_a_bad_setting(demo_env, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BRAINLOC_MAX_SLICES", "abc")
    get_settings.cache_clear()
    assert main(["demo", "--from", str(_kaggle_folder(tmp_path / "lgg"))]) == 2
    assert capsys.readouterr().err == "error: BRAINLOC_MAX_SLICES must be a number, got 'abc'\n"


def test_demo_fails_when_no_case_could_be_imported(demo_env, tmp_path, capsys):
    source = tmp_path / "lgg"
    for case in ("CASE_A_1", "CASE_B_2"):
        folder = source / "kaggle_3m" / case
        folder.mkdir(parents=True)
        (folder / f"{case}_1.tif").write_bytes(b"II*\x00 truncated")
    assert main(["demo", "--from", str(source)]) == 2
    captured = capsys.readouterr()
    assert "CASE_A_1: skipped" in captured.err and "CASE_B_2: skipped" in captured.err
    assert captured.err.endswith(f"error: no case in {source} could be imported\n")
    assert "One-time password:" in captured.out  # the account's new password is still given
    # Once a case is in, a later run that adds nothing new is not a failure.
    good = _kaggle_folder(tmp_path / "good", cases=("CASE_A_1",))
    assert main(["demo", "--from", str(good)]) == 0
    assert main(["demo", "--from", str(good)]) == 0
    assert "CASE_A_1: already imported, skipped" in capsys.readouterr().out


@pytest.mark.parametrize("username", ["  ", "bad name!", "x"])
def test_demo_refuses_a_username_registration_would_refuse(demo_env, tmp_path, capsys, username):
    assert (
        main(["demo", "--from", str(_kaggle_folder(tmp_path / "lgg")), "--username", username]) == 2
    )
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: --username {username!r}: Username must be 3-32 characters: a letter first, then "
        "letters, digits, '.', '_' or '-'.\n"
    )
    assert captured.out == ""
    with Session(get_engine(demo_env.database_url)) as session:
        assert get_user_by_username(session, username=username.strip().lower()) is None
