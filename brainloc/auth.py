"""The authentication seam: everything the sign-in needs except the widgets themselves.

The app signs people in through streamlit-authenticator 0.4.2 (its credentials dict, its
session-state keys and its JWT "remember me" cookie). The Streamlit side of that lives in
``ui/auth.py``; this module holds the pure parts, so swapping the library touches two files:

* :func:`load_credentials` builds the library's credentials dict from the database (stored
  bcrypt hashes; the library's auto-hash stays off).
* :func:`cookie_config` gives the cookie name, key and lifetime from the settings.
* :func:`user_from_cookie` decides whether a presented cookie may sign someone in. The
  library would accept any unexpired cookie with a valid signature; we also refuse cookies
  issued before the user's last sign-out (``users.sessions_revoked_at``), because the library
  cannot reliably delete the browser's cookie on sign-out.
  It also refuses a cookie of an account left without activity past the idle limit
  (``BRAINLOC_IDLE_MINUTES``; ``users.last_active_at``, kept by :func:`record_activity`), as
  the idle sign-out would have ended that sign-in had its tab stayed open.
* :func:`record_logout` revokes the user's remembered sign-ins and audits the sign-out.

The library's own failed-login counter is not used (it is per process, in memory and never
expires); :func:`brainloc.accounts.check_login` decides lockout from the database instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from brainloc.accounts import Clock, LoginResult, record_sign_in, save_with_event
from brainloc.settings import Settings, get_settings
from db import users as user_store
from db.audit import TARGET_USER, Action, record_event
from db.models import ROLE_ADMIN, ROLE_PRACTITIONER, STATUS_APPROVED
from db.types import utc_now


@dataclass(frozen=True)
class CookieConfig:
    """What the library needs to sign and read the "remember me" cookie."""

    name: str
    key: str
    expiry_days: float

    @property
    def lifetime_seconds(self) -> float:
        """Cookie lifetime in seconds."""
        return self.expiry_days * 86400.0


@dataclass(frozen=True)
class CurrentUser:
    """The signed-in user as the pages see it: plain values, re-read on every run."""

    id: int
    username: str
    full_name: str
    email: str
    role: str
    status: str
    category: str
    licence_number: str
    institution: str
    #: The password was chosen by someone else (the demo command); only the Account page
    #: opens until the user sets their own (:func:`ui.guard.require_user`).
    must_change_password: bool = False
    #: Two-step sign-in (an authenticator app's code after the password) is on.
    two_step_enabled: bool = False
    #: The clinic requires two-step sign-in of this account (``BRAINLOC_REQUIRE_TWO_STEP``).
    two_step_required: bool = False
    #: Sign-ins made before this moment have ended (``users.sessions_ended_at``).
    sessions_ended_at: datetime | None = None
    #: When this browser session signed in (``ui.state.current_user``; None: unknown). A
    #: save passes it on, so one that finishes after the account's sign-ins were ended stores
    #: nothing (:func:`db.clinical.create_analysis`).
    signed_in_at: datetime | None = None

    def signed_in_still(self, signed_in_at: datetime | None) -> bool:
        """Whether a browser session that signed in at ``signed_in_at`` (None: unknown) may
        go on: not if the account's sign-ins were ended after it (a password change or reset,
        two-step sign-in turned on or reset, "End all other sessions")."""
        if self.sessions_ended_at is None:
            return True
        return signed_in_at is not None and not user_store.sessions_ended(
            self.sessions_ended_at, signed_in_at
        )

    @property
    def must_set_up_two_step(self) -> bool:
        """Two-step sign-in is required but not on yet: only the Account page opens."""
        return self.two_step_required and not self.two_step_enabled

    @property
    def account_page_only(self) -> bool:
        """Something must be done on the Account page before any other page opens. Only an
        approved account has pages to open: a pending, rejected or disabled one sees its status
        alone, also after an administrator reset its password."""
        approved = self.status == STATUS_APPROVED
        return approved and (self.must_change_password or self.must_set_up_two_step)

    @property
    def is_approved_practitioner(self) -> bool:
        """True for a practitioner an administrator has approved."""
        return self.role == ROLE_PRACTITIONER and self.status == STATUS_APPROVED

    @property
    def is_admin(self) -> bool:
        """True for an approved administrator."""
        return self.role == ROLE_ADMIN and self.status == STATUS_APPROVED


def two_step_required_for(role: str, policy: str) -> bool:
    """Whether an account with ``role`` must use two-step sign-in under ``policy`` (the
    ``BRAINLOC_REQUIRE_TWO_STEP`` setting: "none", "admins" or "everyone")."""
    return policy == "everyone" or (policy == "admins" and role == ROLE_ADMIN)


def cookie_config(settings: Settings) -> CookieConfig:
    """The cookie settings: name, signing key and lifetime (hours converted to days)."""
    return CookieConfig(
        name=settings.cookie_name, key=settings.cookie_key, expiry_days=settings.cookie_hours / 24
    )


def load_credentials(session: Session) -> dict[str, Any]:
    """The library's credentials dict for every account (username -> hash, name, email).

    Pending, rejected and disabled accounts are included on purpose: they may sign in, and
    then see only their status page.
    """
    usernames: dict[str, Any] = {}
    for user in user_store.list_users(session):
        usernames[user.username] = {
            "email": user.email,
            "name": user.full_name,
            "password": user.password_hash,
            "roles": [user.role],
        }
    return {"usernames": usernames}


def load_current_user(session: Session, *, user_id: int) -> CurrentUser | None:
    """The user with ``user_id`` as a :class:`CurrentUser`, or None if it does not exist."""
    user = user_store.get_user(session, user_id=user_id)
    if user is None or user.id is None:
        return None
    category = ""
    if user.category_id is not None:
        found = user_store.get_category(session, category_id=user.category_id)
        category = found.label if found else ""
    return CurrentUser(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        email=user.email,
        role=user.role,
        status=user.status,
        category=category,
        licence_number=user.licence_number,
        institution=user.institution,
        must_change_password=user.must_change_password,
        two_step_enabled=bool(user.totp_secret),
        sessions_ended_at=user.sessions_ended_at,
        # Asked of approved accounts only: the others see nothing but their status page.
        two_step_required=user.status == STATUS_APPROVED
        and two_step_required_for(user.role, get_settings().require_two_step),
    )


#: How far a cookie's issue time may lie ahead of the server's clock (the same clock made it).
COOKIE_CLOCK_SKEW_SECONDS = 60


def _issued_at(expires: float, lifetime_seconds: float) -> float:
    """When a cookie expiring at ``expires`` (a Unix time) was issued.

    The library dates its cookie in the server's local wall-clock time (``datetime.now() +
    timedelta(days=…)``), so a cookie issued before a daylight-saving change really lives an
    hour longer or shorter than its lifetime. Undoing the same local arithmetic gives the real
    issue time; ``expires - lifetime`` would place it up to an hour late, and a cookie issued
    shortly before a sign-out or password change would pass as newer. With the server in UTC
    (the container) both are the same.
    """
    local_expiry = datetime.fromtimestamp(expires)  # naive, local, as the library made it
    return (local_expiry - timedelta(seconds=lifetime_seconds)).timestamp()


def idle_limit(minutes: float) -> timedelta | None:
    """The idle limit of ``BRAINLOC_IDLE_MINUTES`` (``minutes``), or None when it is off (0)."""
    return timedelta(minutes=minutes) if minutes > 0 else None


def idle_past(*, limit, last_activity, now) -> bool:
    """The one idle rule, for the browser session (``ui.idle``: seconds from ``time.time()``)
    and the account (here: datetimes and a timedelta): idle past ``limit`` (None: automatic
    sign-out is off) when the last activity (None: none recorded yet) is longer ago than it."""
    return limit is not None and last_activity is not None and now - last_activity > limit


def record_activity(session: Session, *, user_id: int, at: datetime) -> None:
    """Record that someone used the account at ``at`` (``users.last_active_at``), so that
    its remembered sign-ins stay valid for the idle limit from then. ``ui.idle`` calls it
    for the runs a person caused, at most about once a minute per browser session; every
    sign-in records it too (:func:`brainloc.accounts.record_sign_in`)."""
    user_store.touch_last_active(session, user_id=user_id, at=at)


def user_from_cookie(
    session: Session,
    *,
    token: dict[str, Any],
    cookie: CookieConfig,
    clock: Clock = utc_now,
    idle_minutes: float | None = None,
) -> LoginResult:
    """Accept or refuse a decoded "remember me" cookie ``{"username", "exp_date"}``.

    The signature was checked by the library. The token carries only its expiry, so its
    issue time is the expiry minus the configured lifetime; a token issued before the user's
    last sign-out, password change or disabling is refused.

    With the idle sign-out on (``idle_minutes``, by default ``BRAINLOC_IDLE_MINUTES``; 0 is
    off), a cookie is also refused when the account's last activity in any browser session
    (``users.last_active_at``) is longer ago than the limit: its tab was closed instead of
    being signed out by the idle timer. That refusal is the idle sign-out the closed tab
    missed: audited as ``logout`` with reason ``idle`` (and ``cookie: refused``), and every
    remembered sign-in of the account is revoked (:func:`record_logout`).
    """
    now = clock()
    minutes = get_settings().idle_minutes if idle_minutes is None else idle_minutes
    limit = idle_limit(minutes)
    username = str(token.get("username") or "")
    try:
        expires = datetime.fromtimestamp(float(token.get("exp_date", 0)), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return LoginResult(ok=False, message="unreadable sign-in cookie")
    user = user_store.get_user_by_username(session, username=username) if username else None
    if user is None or expires <= now:
        return LoginResult(ok=False, message="expired or unknown sign-in cookie")
    issued = _issued_at(expires.timestamp(), cookie.lifetime_seconds)
    if issued > now.timestamp() + COOKIE_CLOCK_SKEW_SECONDS:
        # Only a forged cookie (someone holding the key) is issued in the future: it would
        # otherwise pass every revocation.
        return _refused_cookie(session, user, now, "sign-in cookie issued in the future")
    revoked = user.sessions_revoked_at
    if revoked is not None and issued <= revoked.timestamp():
        return _refused_cookie(session, user, now, "sign-in cookie was revoked")
    if idle_past(limit=limit, last_activity=user.last_active_at, now=now):
        record_logout(
            session, user_id=user.id, reason="idle", clock=lambda: now,
            detail={"cookie": "refused"},
        )  # fmt: skip
        return LoginResult(
            ok=False, message="idle past the limit since the last activity", idle=True
        )
    if user.locked_until is not None and now < user.locked_until:
        return _refused_cookie(session, user, now, "account is locked")
    # Reached only when no lock holds, so clearing the lock changes nothing here.
    return record_sign_in(session, user=user, at=now, detail={"method": "cookie"})


def _refused_cookie(session: Session, user, now: datetime, reason: str) -> LoginResult:
    """Refuse a well-signed cookie of an existing account, audited as a failed sign-in (not
    counted towards the lockout): a revoked cookie presented again can be a stolen one, and
    one issued in the future is forged. The account's owner sees it in their security record.
    (An expired cookie is routine and not recorded.)"""
    record_event(
        session, action=Action.LOGIN_FAILED, actor_id=None, at=now, target_type=TARGET_USER,
        target_id=user.id, detail={"reason": reason, "method": "cookie"},
    )  # fmt: skip
    return LoginResult(ok=False, message=reason)


def record_logout(
    session: Session,
    *,
    user_id: int,
    reason: str | None = None,
    clock: Clock = utc_now,
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit a sign-out (with its ``reason`` when the user did not ask for it, e.g. "idle",
    and any further ``detail``) and refuse every "remember me" cookie issued before it."""
    now = clock()
    user = user_store.get_user(session, user_id=user_id)
    if user is None:
        return
    user.sessions_revoked_at = now
    described = ({"reason": reason} if reason else {}) | (detail or {})
    save_with_event(
        session, user=user, action=Action.LOGOUT, actor_id=user.id, at=now,
        detail=described or None,
    )  # fmt: skip
