"""One settings object for the whole application, read from the environment.

Every path, limit and secret the app uses comes from here, so a deployment is configured
in one place (environment variables, optionally ``.streamlit/secrets.toml`` for secrets):

``BRAINLOC_DATA_DIR``          all state: the SQLite file, the cookie key (default ``./data``)
``DATABASE_URL``               SQLAlchemy URL (default ``sqlite:///<data dir>/brainloc.db``)
``BRAINLOC_COOKIE_KEY``        sign-in cookie signing key (>= 32 characters); otherwise
                               ``[brainloc] cookie_key`` in ``.streamlit/secrets.toml``; otherwise a
                               random key generated on first start into ``<data dir>/cookie_key``
``BRAINLOC_COOKIE_HOURS``      lifetime of the "remember me" cookie in hours (default 12)
``BRAINLOC_IDLE_MINUTES``      sign a browser session out after this many minutes without
                               activity (default 30; 0 turns it off)
``BRAINLOC_REQUIRE_TWO_STEP``  who must use two-step sign-in (an authenticator app's code after
                               the password): ``none`` (default; anyone may turn it on),
                               ``admins`` or ``everyone``
``BRAINLOC_MAX_UPLOAD_MB``     largest accepted upload per file (default 200; Streamlit's
                              ``server.maxUploadSize`` caps it)
``BRAINLOC_MAX_IMAGE_PIXELS``  largest accepted image, in pixels per slice (default 16 777 216,
                               i.e. 4096 x 4096; checked before any pixel is decoded)
``BRAINLOC_MAX_SLICES``        most slices accepted in one case (default 512)
``BRAINLOC_MAX_UPLOAD_PIXELS`` most pixels the images of one upload may hold together (default
                               268 435 456, four of the largest case)
``BRAINLOC_MAX_ARCHIVE_MB``    most megabytes the ZIP archives of one upload may unpack to,
                               together (default 1024)
``BRAINLOC_MAX_DECODED_MB``    most megabytes one file's pixels may take once decoded (a TIFF, by
                               its header) or decompressed (a ``.nii.gz``) (default 512)
``BRAINLOC_MODELS_DIR``        trained models and their metadata (default ``<repo>/models``)
``BRAINLOC_BCRYPT_ROUNDS``     bcrypt cost factor (default 12; the test suite lowers it)
``BRAINLOC_INFERENCE_PRECISION``  ``auto`` (default), ``float32`` or ``bfloat16``: the arithmetic
                               the models run in (see :func:`inference_precision`)
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
COOKIE_KEY_FILE = "cookie_key"
#: The SQLite file in the data directory when ``DATABASE_URL`` is not set.
DATABASE_FILE = "brainloc.db"
MIN_COOKIE_KEY_CHARS = 32
COOKIE_NAME = "brainloc_session"


DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
DEFAULT_MAX_SLICES = 512
#: Four of the largest case (``brainloc.scans.MAX_TOTAL_PIXELS``, 64 Mi pixels): several series
#: of a study; 768 MB once stored as uint8 RGB.
DEFAULT_MAX_UPLOAD_PIXELS = 4 * 64 * 1024 * 1024
#: Measured at this size, a ZIP upload took 2.1 GB of memory at its peak.
DEFAULT_MAX_ARCHIVE_MB = 1024
#: A case of the largest size in 16-bit RGB (384 MB) or as float64 (512 MB) fits; measured,
#: the largest TIFF accepted took 2.2 GB of memory at its peak.
DEFAULT_MAX_DECODED_MB = 512


@dataclass(frozen=True)
class ScanLimits:
    """The size limits every scan reader applies (see :func:`scan_limits`)."""

    max_image_pixels: int
    max_slices: int
    #: Most pixels the images of one upload may hold together (``brainloc.scans.UploadPixels``).
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS
    #: Most megabytes (MiB) the ZIP archives of one upload may unpack to, all together.
    max_archive_mb: int = DEFAULT_MAX_ARCHIVE_MB
    #: Most megabytes (MiB) one file's pixels may take once decoded, as its header declares
    #: them, and a compressed NIfTI once decompressed.
    max_decoded_mb: int = DEFAULT_MAX_DECODED_MB


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build it with :func:`load_settings` or :func:`get_settings`."""

    data_dir: Path
    database_url: str
    cookie_name: str
    cookie_key: str
    cookie_hours: float
    max_upload_mb: int
    scan_limits: ScanLimits
    models_dir: Path
    bcrypt_rounds: int
    #: ``BRAINLOC_INFERENCE_PRECISION`` as configured ("auto", "float32" or "bfloat16").
    inference_precision: str
    #: Minutes without activity after which a browser session is signed out; 0: never.
    idle_minutes: float = 30.0
    #: ``BRAINLOC_REQUIRE_TWO_STEP``: "none", "admins" or "everyone" must use two-step sign-in.
    require_two_step: str = "none"

    @property
    def is_sqlite(self) -> bool:
        """True when the database is an SQLite file (the embedded default)."""
        return self.database_url.startswith("sqlite")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {_plain(low)} and {_plain(high)}, got {raw!r}")
    return value


def _plain(bound: float) -> str:
    """A range bound as an administrator types it: 4000000000, not 4e+09."""
    return f"{bound:.0f}" if bound == int(bound) else f"{bound:g}"


def scan_limits(env: Mapping[str, str] | None = None) -> ScanLimits:
    """The deployment's scan size limits, read from the environment on every call.

    Kept apart from :func:`load_settings` so that reading a scan (the CLI, the
    library) has no side effects such as creating the data folder or a cookie key.
    """
    env = os.environ if env is None else env
    return ScanLimits(
        max_image_pixels=int(
            _number(env, "BRAINLOC_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, 1e4, 1e8)
        ),
        max_slices=int(_number(env, "BRAINLOC_MAX_SLICES", DEFAULT_MAX_SLICES, 1, 10_000)),
        max_upload_pixels=int(
            _number(env, "BRAINLOC_MAX_UPLOAD_PIXELS", DEFAULT_MAX_UPLOAD_PIXELS, 1e4, 4e9)
        ),
        max_archive_mb=int(
            _number(env, "BRAINLOC_MAX_ARCHIVE_MB", DEFAULT_MAX_ARCHIVE_MB, 1, 16_384)
        ),
        max_decoded_mb=int(
            _number(env, "BRAINLOC_MAX_DECODED_MB", DEFAULT_MAX_DECODED_MB, 1, 16_384)
        ),
    )


#: The arithmetic the models may run in (:func:`inference_precision`).
PRECISIONS = ("auto", "float32", "bfloat16")


def inference_precision(env: Mapping[str, str] | None = None) -> str:
    """The arithmetic the models run in, from ``BRAINLOC_INFERENCE_PRECISION``.

    ``auto`` (default): bfloat16 on a CPU with Intel AMX-BF16, float32 elsewhere
    (:func:`brainloc.inference.resolve_precision`); ``float32``: the models exactly as
    trained; ``bfloat16``: always the mixed-bfloat16 copy. Like :func:`scan_limits`, read
    without side effects, so the CLIs and the evaluation honour it too.
    """
    env = os.environ if env is None else env
    raw = env.get("BRAINLOC_INFERENCE_PRECISION", "").strip().lower() or "auto"
    if raw not in PRECISIONS:
        raise ValueError(
            f"BRAINLOC_INFERENCE_PRECISION must be one of {', '.join(PRECISIONS)}, got {raw!r}"
        )
    return raw


#: ``BRAINLOC_REQUIRE_TWO_STEP`` values (see :mod:`brainloc.two_step`).
TWO_STEP_POLICIES = ("none", "admins", "everyone")


def two_step_policy(env: Mapping[str, str]) -> str:
    """Who must use two-step sign-in, from ``BRAINLOC_REQUIRE_TWO_STEP`` (default ``none``)."""
    raw = env.get("BRAINLOC_REQUIRE_TWO_STEP", "").strip().lower() or "none"
    if raw not in TWO_STEP_POLICIES:
        raise ValueError(
            f"BRAINLOC_REQUIRE_TWO_STEP must be one of {', '.join(TWO_STEP_POLICIES)}, got {raw!r}"
        )
    return raw


def _secrets_file_key() -> str | None:
    """The cookie key from ``.streamlit/secrets.toml`` ([brainloc] cookie_key), if configured."""
    for folder in (Path.cwd(), REPO_ROOT):
        path = folder / ".streamlit" / "secrets.toml"
        if path.is_file():
            with path.open("rb") as handle:
                data = tomllib.load(handle)
            key = data.get("brainloc", {}).get("cookie_key")
            if key:
                return str(key)
    return None


def _check_key(key: str, source: str) -> str:
    if len(key) < MIN_COOKIE_KEY_CHARS:
        raise ValueError(
            f"the cookie key from {source} is too short: use at least "
            f"{MIN_COOKIE_KEY_CHARS} random characters"
        )
    return key


def resolve_cookie_key(env: Mapping[str, str], data_dir: Path) -> str:
    """Return the cookie signing key, generating and storing one on first start.

    A generated key is 48 random bytes (64 URL-safe characters) written to
    ``<data_dir>/cookie_key`` with permissions 0600, so sign-in cookies survive restarts
    and no key ever lives in the repository.
    """
    if env.get("BRAINLOC_COOKIE_KEY"):
        return _check_key(env["BRAINLOC_COOKIE_KEY"], "BRAINLOC_COOKIE_KEY")
    configured = _secrets_file_key()
    if configured:
        return _check_key(configured, ".streamlit/secrets.toml")
    path = data_dir / COOKIE_KEY_FILE
    if path.is_file():
        return _check_key(path.read_text(encoding="ascii").strip(), str(path))
    private_data_dir(data_dir)
    key = secrets.token_urlsafe(48)
    # O_EXCL: if two processes start at once, exactly one writes the key, the other reads it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _check_key(path.read_text(encoding="ascii").strip(), str(path))
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    logger.info("generated a new cookie key in %s", path)
    return key


def private_data_dir(data_dir: Path) -> Path:
    """Create ``data_dir`` readable by its owner only (0700), or tighten an existing one that
    others could read or enter (a folder made by hand or by an earlier ``restore``): it holds
    the database, the cookie key and the backups. A folder that is not ours is left as it
    is, with a warning."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(data_dir.stat().st_mode) & 0o077:
        try:
            os.chmod(data_dir, 0o700)
        except OSError as error:
            logger.warning("%s is open to others and cannot be changed: %s", data_dir, error)
        else:
            logger.info("made %s accessible to its owner only", data_dir)
    return data_dir


def data_dir_from(env: Mapping[str, str]) -> Path:
    """``BRAINLOC_DATA_DIR`` (default ``./data``) as an absolute path; nothing is created."""
    return Path(env.get("BRAINLOC_DATA_DIR") or "data").expanduser().resolve()


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file at ``path`` (``sqlite:////abs/path/file.db`` for
    an ordinary path); a ``#``, ``?`` or ``%`` in the path is escaped, so the URL names that
    very file."""
    from sqlalchemy.engine import URL

    return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def database_url_from(env: Mapping[str, str], data_dir: Path) -> str:
    """``DATABASE_URL``, or the SQLite file in ``data_dir``; nothing is created.

    Raises:
        ValueError: ``DATABASE_URL`` is not a URL SQLAlchemy can use.
    """
    configured = env.get("DATABASE_URL")
    if not configured:
        return sqlite_url(data_dir / DATABASE_FILE)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    # The value is not repeated in the message: it may hold a password.
    try:
        url = make_url(configured)
    except ArgumentError:
        raise ValueError(
            "DATABASE_URL is not a database URL (such as sqlite:////path/brainloc.db or "
            "postgresql+psycopg://user@host/brainloc)"
        ) from None
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"DATABASE_URL names a database kind SQLAlchemy does not know: {url.drivername!r}"
        ) from None
    return configured


def _usable_data_dir(data_dir: Path) -> None:
    """:func:`private_data_dir`, with an unusable folder reported as a ValueError that says so."""
    try:
        private_data_dir(data_dir)
    except OSError as error:
        raise ValueError(_data_dir_problem(data_dir, error)) from None


def _data_dir_problem(data_dir: Path, error: OSError) -> str:
    if data_dir.exists() and not data_dir.is_dir():
        return f"BRAINLOC_DATA_DIR {data_dir} is a file, not a folder"
    named = error.filename and str(error.filename) != str(data_dir)
    where = f" ({error.filename})" if named else ""
    return f"BRAINLOC_DATA_DIR {data_dir} cannot be used: {error.strerror or error}{where}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default ``os.environ``); see the module docstring.

    Raises:
        ValueError: a setting is wrong, or the data folder cannot be made or written (the
            message says which and why).
    """
    env = os.environ if env is None else env
    data_dir = data_dir_from(env)
    models_dir = Path(env.get("BRAINLOC_MODELS_DIR") or REPO_ROOT / "models").expanduser()
    # Every value is checked before the data folder or the cookie key is made.
    checked = {
        "database_url": database_url_from(env, data_dir),
        "cookie_hours": _number(env, "BRAINLOC_COOKIE_HOURS", 12.0, 0.25, 24.0 * 30),
        "max_upload_mb": int(_number(env, "BRAINLOC_MAX_UPLOAD_MB", 200, 1, 2000)),
        "scan_limits": scan_limits(env),
        "bcrypt_rounds": int(_number(env, "BRAINLOC_BCRYPT_ROUNDS", 12, 4, 16)),
        "inference_precision": inference_precision(env),
        "idle_minutes": _number(env, "BRAINLOC_IDLE_MINUTES", 30.0, 0.0, 24.0 * 60),
        "require_two_step": two_step_policy(env),
    }
    _usable_data_dir(data_dir)  # the database and the key
    try:
        cookie_key = resolve_cookie_key(env, data_dir)
    except OSError as error:
        raise ValueError(_data_dir_problem(data_dir, error)) from None
    return Settings(
        data_dir=data_dir,
        cookie_name=COOKIE_NAME,
        cookie_key=cookie_key,
        models_dir=models_dir.resolve(),
        **checked,
    )


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
