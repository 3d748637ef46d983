"""Settings from the environment: defaults, overrides, limits and the cookie key file."""

from __future__ import annotations

import stat

import pytest

from brainloc.settings import COOKIE_KEY_FILE, load_settings, scan_limits


def test_defaults_put_everything_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'brainloc.db'}"
    assert settings.is_sqlite
    assert settings.cookie_hours == 12.0
    assert settings.bcrypt_rounds == 12
    assert settings.inference_precision == "auto"
    assert settings.models_dir.name == "models"


def test_upload_size_limits_default_to_the_former_constants_and_are_read_from_the_env():
    from brainloc.scans import MAX_TOTAL_PIXELS

    defaults = scan_limits({})
    assert defaults.max_upload_pixels == 4 * MAX_TOTAL_PIXELS == 268_435_456
    assert (defaults.max_archive_mb, defaults.max_decoded_mb) == (1024, 512)
    small = scan_limits(
        {
            "BRAINLOC_MAX_UPLOAD_PIXELS": "50000000",
            "BRAINLOC_MAX_ARCHIVE_MB": " 200 ",
            "BRAINLOC_MAX_DECODED_MB": "128",
        }
    )
    assert (small.max_upload_pixels, small.max_archive_mb, small.max_decoded_mb) == (
        50_000_000,
        200,
        128,
    )


def test_generated_cookie_key_is_long_private_and_stable(tmp_path):
    env = {"BRAINLOC_DATA_DIR": str(tmp_path)}
    first = load_settings(env)
    key_file = tmp_path / COOKIE_KEY_FILE
    assert len(first.cookie_key) >= 64  # 48 random bytes, URL-safe base64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings(env).cookie_key == first.cookie_key
    other = load_settings({"BRAINLOC_DATA_DIR": str(tmp_path / "other")})
    assert other.cookie_key != first.cookie_key


def test_a_data_directory_others_can_read_is_tightened(tmp_path):
    # Made by hand (or by an older `restore`) with the usual umask: 0755.
    data = tmp_path / "made-by-hand"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    load_settings({"BRAINLOC_DATA_DIR": str(data)})
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / COOKIE_KEY_FILE).stat().st_mode) == 0o600


def test_environment_overrides(tmp_path):
    env = {
        "BRAINLOC_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql+psycopg://brainloc@db/brainloc",
        "BRAINLOC_COOKIE_KEY": "k" * 40,
        "BRAINLOC_COOKIE_HOURS": "8",
        "BRAINLOC_MAX_UPLOAD_MB": "50",
        "BRAINLOC_MODELS_DIR": str(tmp_path / "m"),
    }
    settings = load_settings(env)
    assert settings.database_url.startswith("postgresql") and not settings.is_sqlite
    assert settings.cookie_key == "k" * 40
    assert not (tmp_path / COOKIE_KEY_FILE).exists()
    assert (settings.cookie_hours, settings.max_upload_mb) == (8.0, 50)
    assert settings.models_dir == tmp_path / "m"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BRAINLOC_COOKIE_KEY", "too-short", "at least 32"),
        ("BRAINLOC_COOKIE_HOURS", "forever", "must be a number"),
        ("BRAINLOC_COOKIE_HOURS", "0", "between"),
        ("BRAINLOC_BCRYPT_ROUNDS", "40", "between"),
        ("BRAINLOC_INFERENCE_PRECISION", "fp16", "must be one of auto, float32, bfloat16"),
        (
            "BRAINLOC_MAX_UPLOAD_PIXELS",
            "lots",
            "^BRAINLOC_MAX_UPLOAD_PIXELS must be a number, got 'lots'$",
        ),
        (
            "BRAINLOC_MAX_UPLOAD_PIXELS",
            "100",
            "^BRAINLOC_MAX_UPLOAD_PIXELS must be between 10000 and 4000000000, got '100'$",
        ),
        ("BRAINLOC_MAX_ARCHIVE_MB", "1GB", "^BRAINLOC_MAX_ARCHIVE_MB must be a number"),
        (
            "BRAINLOC_MAX_ARCHIVE_MB",
            "0",
            "^BRAINLOC_MAX_ARCHIVE_MB must be between 1 and 16384, got '0'$",
        ),
        (
            "BRAINLOC_MAX_DECODED_MB",
            "20000",
            "^BRAINLOC_MAX_DECODED_MB must be between 1 and 16384, got '20000'$",
        ),
    ],
)
def test_bad_values_get_clear_messages(tmp_path, name, value, message):
    with pytest.raises(ValueError, match=message):
        load_settings({"BRAINLOC_DATA_DIR": str(tmp_path), name: value})


def test_a_wrong_value_creates_nothing(tmp_path):
    data = tmp_path / "data"
    with pytest.raises(ValueError, match="BRAINLOC_IDLE_MINUTES must be a number"):
        load_settings({"BRAINLOC_DATA_DIR": str(data), "BRAINLOC_IDLE_MINUTES": "soon"})
    assert not data.exists()  # neither the folder nor a cookie key


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo", "DATABASE_URL is not a database URL"),
        ("foo://db/x", "DATABASE_URL names a database kind SQLAlchemy does not know: 'foo'"),
    ],
)
def test_an_unusable_database_url_is_a_clear_error(tmp_path, url, message):
    with pytest.raises(ValueError, match=message):
        load_settings({"BRAINLOC_DATA_DIR": str(tmp_path), "DATABASE_URL": url})


def test_a_data_directory_that_is_a_file_is_a_clear_error(tmp_path):
    path = tmp_path / "data"
    path.write_text("a file")
    with pytest.raises(ValueError, match=f"BRAINLOC_DATA_DIR {path} is a file, not a folder"):
        load_settings({"BRAINLOC_DATA_DIR": str(path)})
    with pytest.raises(ValueError, match="cannot be used: Not a directory"):
        load_settings({"BRAINLOC_DATA_DIR": str(path / "below")})


def test_the_default_database_url_names_the_file_whatever_its_folder_is_called(tmp_path):
    from sqlalchemy.engine import make_url

    from db.engine import make_engine

    plain = load_settings({"BRAINLOC_DATA_DIR": str(tmp_path / "plain")})
    assert plain.database_url == f"sqlite:///{tmp_path / 'plain' / 'brainloc.db'}"  # as before
    data = tmp_path / "ward #3? 50%25 off"
    settings = load_settings({"BRAINLOC_DATA_DIR": str(data)})
    assert make_url(settings.database_url).database == str(data / "brainloc.db")
    engine = make_engine(settings.database_url)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()
    assert stat.S_IMODE((data / "brainloc.db").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["plain", data.name])
