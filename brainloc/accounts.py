"""Accounts: registration rules, password hashing, approval workflow and sign-in lockout.

Pure logic over :mod:`db` (no Streamlit): the registration page, the admin page and the
``create-admin`` command all call these functions, which raise :class:`AccountError` (a
``ValueError``) with messages meant for the person at the keyboard. The clock is injectable
so the lockout timing is testable.

Sign-in lockout: 5 failed attempts within 15 minutes lock the account for 15 minutes. The
failures are counted from the audit log (every failure is audited anyway), the lock is kept on
the user row, so both survive restarts. A failed sign-in always produces the same message,
whether the username exists, the password is wrong or the account is locked.

Every failed sign-in also records the client's network address, and an address with too many
failures is refused before any password is checked (:mod:`brainloc.sign_in_throttle`).
Registrations and refused registrations record it too, and an address that registered or was
refused too often is refused before its form is checked
(:mod:`brainloc.registration_throttle`).
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn

import bcrypt
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from zxcvbn import zxcvbn

from brainloc.registration_throttle import record_registration_throttled, registration_throttled
from brainloc.settings import get_settings
from brainloc.sign_in_throttle import (
    client_key,
    record_throttled,
    throttled_message,
    throttled_until,
)
from db import users as user_store
from db.audit import TARGET_USER, Action, count_events, record_event
from db.models import (
    ROLE_ADMIN,
    ROLE_PRACTITIONER,
    STATUS_APPROVED,
    STATUS_PENDING,
    User,
)
from db.types import utc_now

Clock = Callable[[], datetime]

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything beyond 72 bytes, so we refuse it.
#: The least zxcvbn strength score (0-4) a chosen password needs. 3 means "safely unguessable":
#: under zxcvbn's model an attacker needs more than 10^8 guesses; common passwords, names,
#: dates, keyboard walks and words with digits tacked on score lower however long they are.
MIN_PASSWORD_SCORE = 3
#: The password rules in a sentence, for the forms that ask for a new password.
PASSWORD_RULES = (
    f"At least {MIN_PASSWORD_CHARS} characters, not your username or email, and not easy to "
    "guess (common passwords, names and dates are refused): a few uncommon words work well."
)
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)
LOGIN_FAILED_MESSAGE = (
    "Sign-in failed: the username or password is wrong, or the account is temporarily "
    "locked after repeated failed attempts (try again in 15 minutes)."
)
#: How long the one-time password of a password reset signs in (once) after the reset.
ONE_TIME_PASSWORD_HOURS = 24
ONE_TIME_PASSWORD_LIFETIME = timedelta(hours=ONE_TIME_PASSWORD_HOURS)
#: Shown for the right one-time password that no longer signs in (used already or expired).
#: Only whoever knows that password sees it, so it may say more than :data:`LOGIN_FAILED_MESSAGE`.
ONE_TIME_PASSWORD_SPENT_MESSAGE = (
    "Sign-in failed: this one-time password no longer works. It signs in only once, within "
    f"{ONE_TIME_PASSWORD_HOURS} hours of the reset. Ask your administrator for a new one."
)

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{2,31}$")
#: What :data:`USERNAME_RE` asks for, said to whoever chose a name it refuses.
USERNAME_RULE = (
    "Username must be 3-32 characters: a letter first, then letters, digits, '.', '_' or '-'."
)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
LICENCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ./-]{2,59}$")


class AccountError(ValueError):
    """A request about an account was refused; ``errors`` maps form fields to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))

    @property
    def message(self) -> str:
        """Every message in one line, for a page that shows the refusal in one box."""
        return " ".join(self.errors.values())


class RegistrationThrottled(AccountError):
    """A registration refused by its address's throttle before any field was checked
    (:mod:`brainloc.registration_throttle`): no field is at fault, so ``errors`` holds the
    message under ``"form"`` and the page shows :attr:`message` on its own."""

    def __init__(self, message: str) -> None:
        super().__init__({"form": message})


@dataclass(frozen=True)
class Registration:
    """What the registration form collects (plain values, straight from the widgets)."""

    full_name: str
    email: str
    username: str
    password: str
    password_repeat: str
    category_code: str
    licence_number: str
    institution: str


@dataclass(frozen=True)
class LoginResult:
    """The outcome of one sign-in attempt; ``message`` is safe to show as it is."""

    ok: bool
    user_id: int | None = None
    message: str = ""
    locked_now: bool = field(default=False, repr=False)
    #: The password was right, but the account uses two-step sign-in: the user is not signed
    #: in until :func:`brainloc.two_step.check_second_step` accepts a code.
    second_step: bool = False
    #: The two-step code can no longer finish this sign-in (locked, too late): ask for the
    #: password again.
    start_over: bool = False
    #: A remembered sign-in refused because the account was idle past the limit
    #: (:func:`brainloc.auth.user_from_cookie`): the sign-in page says so.
    idle: bool = False


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and compared trimmed and lower-case."""
    return username.strip().lower()


def clean_text(value: str) -> str:
    """Typed text as stored: NFKC-normalised (full-width and other compatibility forms folded),
    without control or invisible formatting characters (zero-width spaces and joiners,
    direction marks), trimmed. So two entries that look the same are the same."""
    text = unicodedata.normalize("NFKC", value or "")
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf")).strip()


def normalise_email(email: str) -> str:
    """Emails are stored cleaned (:func:`clean_text`) and lower-case, so duplicates are found
    reliably; a domain in other scripts is stored in its ASCII (IDNA, ``xn--``) form, so a
    look-alike letter (a Cyrillic 'а' in 'hospitаl.org') shows as the different domain it is."""
    mail = clean_text(email).lower()
    local, at, domain = mail.rpartition("@")
    if at and domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return mail  # refused by the address check
    return f"{local}{at}{domain}"


#: Letters and digits that cannot be mistaken for one another when a one-time password is
#: read out on the phone or copied by hand (no 0/o, 1/l/i).
ONE_TIME_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def one_time_password(*, groups: int = 4, group_size: int = 4) -> str:
    """A random password for someone else to pass on, e.g. ``"k7mq-x2rt-9bzd-wh4e"``.

    Four groups of four from 31 characters carry about 79 bits of randomness (``secrets``).
    It satisfies the password policy, and whoever receives it must replace it
    (``users.must_change_password``); a reset's also signs in only once and only for
    :data:`ONE_TIME_PASSWORD_LIFETIME` (:func:`one_time_password_refusal`).
    """
    return "-".join(
        "".join(secrets.choice(ONE_TIME_ALPHABET) for _ in range(group_size)) for _ in range(groups)
    )


def hash_password(password: str, *, rounds: int | None = None) -> str:
    """A bcrypt hash of ``password`` (cost from the settings unless given)."""
    cost = rounds if rounds is not None else get_settings().bcrypt_rounds
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(cost)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches the bcrypt ``password_hash``. A password longer than
    bcrypt takes (:data:`MAX_PASSWORD_BYTES`; no stored one is) never matches, but costs a full
    check all the same, so its timing tells nothing."""
    data = password.encode("utf-8")
    matched = bcrypt.checkpw(data[:MAX_PASSWORD_BYTES], password_hash.encode("ascii"))
    return matched and len(data) <= MAX_PASSWORD_BYTES


@functools.cache
def _dummy_hash(rounds: int) -> str:
    return hash_password("brainloc-timing-equaliser", rounds=rounds)


def _spend_hash_time(password: str) -> None:
    """Cost the same as a real check, so timing does not tell whether a username exists."""
    verify_password(password, _dummy_hash(get_settings().bcrypt_rounds))


def password_problems(password: str, repeat: str, *, username: str, email: str) -> list[str]:
    """Every way ``password`` breaks the policy (empty list when it is acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_CHARS:
        problems.append(f"Password must be at least {MIN_PASSWORD_CHARS} characters long.")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        problems.append(f"Password must be at most {MAX_PASSWORD_BYTES} bytes long.")
    if password != password.strip():
        problems.append("Password must not start or end with a space.")
    lowered = password.strip().lower()
    if lowered and lowered in {normalise_username(username), normalise_email(email)}:
        problems.append("Password must not be the same as your username or email.")
    if password != repeat:
        problems.append("The two passwords do not match.")
    if not problems:
        problems.extend(_guessability_problems(password, username=username, email=email))
    return problems


def _guessability_problems(password: str, *, username: str, email: str) -> list[str]:
    """zxcvbn's judgement of how easily ``password`` is guessed (NIST SP 800-63B asks that
    common and context-specific passwords be refused), with its own advice."""
    mail = normalise_email(email)
    hints = [normalise_username(username), mail, mail.split("@")[0], "brainloc"]
    verdict = zxcvbn(password, user_inputs=[h for h in hints if h])
    if verdict["score"] >= MIN_PASSWORD_SCORE:
        return []
    feedback = verdict["feedback"]
    advice = " ".join(part for part in (feedback["warning"], *feedback["suggestions"]) if part)
    message = "This password is too easy to guess."
    return [f"{message} {advice}" if advice else message]


def found_user(user: User | None) -> User:
    """``user`` as read; refused with a message when no such account exists (None)."""
    if user is None:
        raise AccountError({"user": "That account does not exist."})
    return user


def existing_user(session: Session, *, user_id: int) -> User:
    """The account with ``user_id``; refused with a message when it does not exist."""
    return found_user(user_store.get_user(session, user_id=user_id))


def user_named(session: Session, *, username: str) -> User:
    """The account named ``username`` (any case, as typed on a command line); refused with a
    message when there is none."""
    user = user_store.get_user_by_username(session, username=normalise_username(username))
    if user is None:
        raise AccountError({"username": f"There is no account named '{username}'."})
    return user


def one_time_password_refusal(user: User, *, at: datetime) -> str | None:
    """Why the account's one-time password (a reset's) no longer signs in at ``at``:
    ``"already used"`` after its first sign-in, ``"expired"`` once
    :data:`ONE_TIME_PASSWORD_LIFETIME` has passed since the reset; None while it still
    does, and for an account without one."""
    if user.one_time_password_expires_at is None:
        return None
    if user.one_time_password_used_at is not None:
        return "already used"
    if at >= user.one_time_password_expires_at:
        return "expired"
    return None


def spend_one_time_password(user: User, *, at: datetime) -> None:
    """Mark the account's one-time password (if it has one) as used by a sign-in at ``at``:
    it signs in no more, and the user chooses their own in this session (the Account page's
    password change still takes it as the current password)."""
    if user.one_time_password_expires_at is not None and user.one_time_password_used_at is None:
        user.one_time_password_used_at = at


def refuse_spent_one_time_password(
    session: Session, *, user: User, at: datetime, why: str, client_address: str | None = None
) -> LoginResult:
    """Refuse the right one-time password that no longer signs in (``why``: see
    :func:`one_time_password_refusal`): a failed sign-in like any other, audited
    (``one-time password already used`` / ``… expired``) and counted towards the lockout and
    towards ``client_address``'s throttle."""
    locked_now = record_login_failure(
        session, user=user, at=at, reason=f"one-time password {why}",
        client_address=client_address,
    )  # fmt: skip
    return LoginResult(
        ok=False, message=ONE_TIME_PASSWORD_SPENT_MESSAGE, locked_now=locked_now, start_over=True
    )


def end_sign_ins(user: User, *, at: datetime) -> None:
    """End every sign-in of ``user`` made before ``at``: remembered ones (their cookies are
    refused) and open browser sessions (``ui.state.current_user`` signs them out at their next
    interaction). The session that asked for it stays signed in by recording its own sign-in
    time after ``at`` (``ui.auth.keep_this_session``)."""
    user.sessions_revoked_at = at
    user.sessions_ended_at = at


def save_with_event(
    session: Session,
    *,
    user: User,
    action: str,
    actor_id: int | None,
    at: datetime,
    detail: dict | None = None,
    client_address: str | None = None,
) -> User:
    """Save ``user`` and audit ``action`` on it, in the caller's transaction (with
    ``client_address`` for an event that counts towards that address's throttle)."""
    user_store.save_user(session, user=user)
    record_event(
        session, action=action, actor_id=actor_id, target_type=TARGET_USER, target_id=user.id,
        at=at, detail=detail, client_address=client_address,
    )  # fmt: skip
    return user


USERNAME_TAKEN = "This username is already taken; choose another."
EMAIL_TAKEN = "An account with this email already exists."


def _identity_errors(
    session: Session, *, full_name: str, email: str, username: str, check_taken: bool = True
) -> dict:
    """What is wrong with the name, username and email; with ``check_taken``, also a username
    or email another account has (else see :func:`_taken`)."""
    errors: dict[str, str] = {}
    if not 2 <= len(clean_text(full_name)) <= 120:
        errors["full_name"] = "Full name must be between 2 and 120 characters."
    name = normalise_username(username)
    if not USERNAME_RE.match(name):
        errors["username"] = USERNAME_RULE
    mail = normalise_email(email)
    if len(mail) > 254 or not mail.isascii() or not EMAIL_RE.match(mail):
        errors["email"] = "Enter a valid email address, like name@hospital.org."
    if check_taken:
        errors = _taken(session, username=name, email=mail) | errors
    return errors


def _taken(session: Session, *, username: str, email: str) -> dict[str, str]:
    """The username and email of ``username``/``email`` (normalised) that an account has."""
    taken = {}
    if user_store.get_user_by_username(session, username=username) is not None:
        taken["username"] = USERNAME_TAKEN
    if user_store.get_user_by_email(session, email=email) is not None:
        taken["email"] = EMAIL_TAKEN
    return taken


def register_practitioner(
    session: Session,
    *,
    form: Registration,
    clock: Clock = utc_now,
    client_address: str | None = None,
) -> User:
    """Create a **pending** practitioner account, or raise :class:`AccountError`.

    ``client_address`` is the client's network address (None when unknown: not throttled).
    An address that registered or was refused too often recently is refused first, before any
    field is read, with :class:`RegistrationThrottled`, whose message says when to try again
    and is the same whatever the form holds (:mod:`brainloc.registration_throttle`).

    Whether the username or the email is taken is checked only once every field is valid: a
    registration form must say a username is taken, but it should not be a free lookup of
    who has an account. Every refusal is audited (``register_refused`` with a reason naming
    the fields, never their values; committed before the error is raised, so the caller's
    rollback keeps it) with the address, and counts towards its throttle; so does the
    registration itself (``register``).
    """
    now = clock()
    address = client_key(client_address)
    throttled = registration_throttled(session, address=address, at=now)
    if throttled is not None:
        record_registration_throttled(session, address=address, at=now, throttled=throttled)
        session.commit()
        raise RegistrationThrottled(throttled.message(at=now))
    category = user_store.get_category_by_code(session, code=form.category_code)
    errors = _registration_errors(session, form=form, category_known=category is not None)
    if errors:
        _refuse_registration(
            session, at=now, address=address, errors=errors,
            reason="invalid " + ", ".join(sorted(errors)),
        )  # fmt: skip
    taken = _taken(
        session, username=normalise_username(form.username), email=normalise_email(form.email)
    )
    if taken:
        _refuse_registration(
            session, at=now, address=address, errors=taken,
            reason=" and ".join(f"{field} taken" for field in sorted(taken)),
        )  # fmt: skip
    user = User(
        username=normalise_username(form.username),
        full_name=clean_text(form.full_name),
        email=normalise_email(form.email),
        password_hash=hash_password(form.password),
        role=ROLE_PRACTITIONER,
        status=STATUS_PENDING,
        category_id=category.id,
        licence_number=form.licence_number.strip(),
        institution=clean_text(form.institution),
        created_at=now,
        updated_at=now,
    )
    try:
        user_store.save_user(session, user=user)  # first, so the event can name the new id
    except IntegrityError:
        # The same username or email registered by someone else in the same moment.
        session.rollback()
        _refuse_registration(
            session, at=now, address=address, reason="username or email taken meanwhile",
            errors={"username": "This username or email was just registered; choose another."},
        )  # fmt: skip
    return save_with_event(
        session, user=user, action=Action.REGISTER, actor_id=user.id, at=now,
        client_address=address,
    )  # fmt: skip


def _registration_errors(
    session: Session, *, form: Registration, category_known: bool
) -> dict[str, str]:
    """What is wrong with the fields of ``form``, taken usernames and emails aside
    (``category_known``: whether its category code names a category)."""
    errors = _identity_errors(
        session,
        full_name=form.full_name,
        email=form.email,
        username=form.username,
        check_taken=False,
    )
    problems = password_problems(
        form.password, form.password_repeat, username=form.username, email=form.email
    )
    if problems:
        errors["password"] = " ".join(problems)
    if not category_known:
        errors["category"] = "Choose your practitioner category."
    if not LICENCE_RE.match(form.licence_number.strip()):
        errors["licence_number"] = (
            "Enter your licence or registration number (3-60 letters, digits, spaces, '.', "
            "'/' or '-')."
        )
    if not 2 <= len(clean_text(form.institution)) <= 160:
        errors["institution"] = "Institution must be between 2 and 160 characters."
    return errors


def _refuse_registration(
    session: Session, *, at: datetime, address: str | None, reason: str, errors: dict[str, str]
) -> NoReturn:
    """Audit a refused registration (``register_refused``: ``reason`` and the address, which
    it counts towards), commit it, and raise ``errors``. Nothing typed is recorded: not the
    password, nor the username or email (a taken one names someone else's account)."""
    record_event(
        session, action=Action.REGISTER_REFUSED, actor_id=None, at=at, detail={"reason": reason},
        client_address=address,
    )  # fmt: skip
    session.commit()
    raise AccountError(errors)


def create_admin(
    session: Session,
    *,
    username: str,
    email: str,
    password: str,
    full_name: str = "",
    clock: Clock = utc_now,
) -> User:
    """Create an approved administrator (the ``create-admin`` command), or raise."""
    display_name = clean_text(full_name) or normalise_username(username)
    errors = _identity_errors(session, full_name=display_name, email=email, username=username)
    problems = password_problems(password, password, username=username, email=email)
    if problems:
        errors["password"] = " ".join(problems)
    if errors:
        raise AccountError(errors)
    now = clock()
    user = User(
        username=normalise_username(username),
        full_name=display_name,
        email=normalise_email(email),
        password_hash=hash_password(password),
        role=ROLE_ADMIN,
        status=STATUS_APPROVED,
        created_at=now,
        updated_at=now,
        status_changed_at=now,
    )
    user_store.save_user(session, user=user)  # first, so the event can name the new id
    return save_with_event(
        session, user=user, action=Action.ADMIN_CREATED, actor_id=user.id, at=now
    )


def check_login(
    session: Session,
    *,
    username: str,
    password: str,
    verify: Callable[[str, str], bool] | None = None,
    clock: Clock = utc_now,
    client_address: str | None = None,
) -> LoginResult:
    """Decide one sign-in attempt: the address throttle and the lockout first, then the
    password, then bookkeeping.

    ``verify(username, password)`` checks the password; by default against the stored
    bcrypt hash. The app passes the authentication library's own check, which also marks
    its session as signed in. It is never called for unknown or locked accounts, nor from a
    throttled address.

    ``client_address`` is the client's network address (None when unknown: not throttled).
    Every failure is audited with it and counts towards it; an address with too many recent
    failures is refused before anything else, without a password check (it costs no bcrypt
    time and tells nothing about the username), with a message that says when to try again
    (:mod:`brainloc.sign_in_throttle`).

    For an account with two-step sign-in a right password gives ``second_step=True`` and
    signs nobody in (audited as ``second_step_asked``): :func:`brainloc.two_step.check_second_step`
    finishes (and audits) it.

    A reset's one-time password signs in once, within :data:`ONE_TIME_PASSWORD_LIFETIME`
    (that sign-in spends it). Used again or too late it is refused with
    :data:`ONE_TIME_PASSWORD_SPENT_MESSAGE`, as a failed sign-in (audited, counted towards the
    lockout); checked with the stored hash, so the library's session is never marked signed in.
    """
    now = clock()
    name = normalise_username(username)
    address = client_key(client_address)
    until = throttled_until(session, address=address, at=now)
    if until is not None:
        record_throttled(
            session, address=address, at=now, detail={"username": typed_name_hint(name)}
        )
        return LoginResult(ok=False, message=throttled_message(until, at=now))
    found = user_store.get_user_by_username(session, username=name) if name else None
    if found is None:
        _spend_hash_time(password)
        record_event(
            session, action=Action.LOGIN_FAILED, actor_id=None, at=now,
            detail={"username": typed_name_hint(name), "reason": "unknown username"},
            client_address=address,
        )  # fmt: skip
        return LoginResult(ok=False, message=LOGIN_FAILED_MESSAGE)
    with one_account_at_a_time(session, found.id) as user:
        if user is None:  # removed meanwhile
            return LoginResult(ok=False, message=LOGIN_FAILED_MESSAGE)
        return _decide_password(
            session, user=user, name=name, password=password, verify=verify, at=clock(),
            client_address=address,
        )  # fmt: skip


def typed_name_hint(name: str) -> str:
    """What the audit log keeps of a name typed at sign-in that is no account: its first two
    characters and its length (``"ad… (5 characters)"``), enough to see the same name tried
    again and again. Not the whole: people type their password into the username field."""
    return f"{name[:2]}… ({len(name)} characters)"


def _decide_password(
    session: Session,
    *,
    user: User,
    name: str,
    password: str,
    verify: Callable[[str, str], bool] | None,
    at: datetime,
    client_address: str | None,
) -> LoginResult:
    """:func:`check_login` for an existing account, while no other check of it runs."""
    if user.locked_until is not None and at < user.locked_until:
        _spend_hash_time(password)
        record_event(
            session, action=Action.LOGIN_FAILED, actor_id=user.id, at=at,
            target_type=TARGET_USER, target_id=user.id, detail={"reason": "account locked"},
            client_address=client_address,
        )  # fmt: skip
        return LoginResult(ok=False, message=LOGIN_FAILED_MESSAGE)
    spent = one_time_password_refusal(user, at=at)
    if spent is not None and verify_password(password, user.password_hash):
        return refuse_spent_one_time_password(
            session, user=user, at=at, why=spent, client_address=client_address
        )
    if spent is not None:
        ok = False  # a wrong password (the one-time one is the only one the account has)
    elif verify is None or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        # Too long for bcrypt: the library's check would refuse it at once (it raises), which
        # an unknown username does not; checked here at full cost, it is a wrong password.
        ok = verify_password(password, user.password_hash)
    else:
        ok = bool(verify(name, password))
    if ok and user.totp_secret:
        # Not signed in yet: the second step decides (and audits) the sign-in. The right
        # password is recorded, so that its owner sees it when no code follows.
        record_event(
            session, action=Action.SECOND_STEP_ASKED, actor_id=user.id, at=at,
            target_type=TARGET_USER, target_id=user.id,
        )  # fmt: skip
        return LoginResult(ok=True, user_id=user.id, second_step=True)
    if ok:
        spend_one_time_password(user, at=at)
        return record_sign_in(session, user=user, at=at, detail={"method": "password"})
    locked_now = record_login_failure(
        session, user=user, at=at, reason="wrong password", client_address=client_address
    )
    return LoginResult(ok=False, message=LOGIN_FAILED_MESSAGE, locked_now=locked_now)


_account_locks: dict[int, threading.Lock] = {}
_account_locks_guard = threading.Lock()


@contextmanager
def one_account_at_a_time(session: Session, user_id: int) -> Iterator[User | None]:
    """The account, read afresh, while no other request of this server decides on its
    password or two-step codes.

    Checking a password or code reads the account (lockout, used time step, recovery codes),
    decides and writes: two requests at once could both guess before either records its
    failure (more guesses than the lockout allows), or both accept one code. Here they take
    turns: in this process by a per-account lock, held until the block ends by committing
    the session (with anything else the caller wrote in it), and across processes on
    PostgreSQL by the row lock of :func:`db.users.get_user_locked`. One lock per account
    that ever signed in is kept.
    """
    with _account_locks_guard:
        lock = _account_locks.setdefault(user_id, threading.Lock())
    with lock:
        yield user_store.get_user_locked(session, user_id=user_id)
        session.commit()


def record_sign_in(session: Session, *, user: User, at: datetime, detail: dict) -> LoginResult:
    """Sign ``user`` in at ``at``: the last sign-in time (also the last activity, for the idle
    sign-out), any (expired) lock cleared, and a ``login`` event whose ``detail`` says how
    (``{"method": "password"}`` …)."""
    user.last_login_at = at
    if user.last_active_at is None or user.last_active_at < at:
        user.last_active_at = at
    user.locked_until = None
    save_with_event(session, user=user, action=Action.LOGIN, actor_id=user.id, at=at, detail=detail)
    return LoginResult(ok=True, user_id=user.id)


def record_login_failure(
    session: Session, *, user: User, at: datetime, reason: str, client_address: str | None = None
) -> bool:
    """Audit one failed sign-in to an existing account (a wrong password or a wrong
    two-step code) and lock the account when it is the fifth in the window; True if it did.

    Failures count strictly after the last success and after the last lock ended, within
    :data:`FAILURE_WINDOW`. A known ``client_address`` is recorded with the failure and
    counts it towards that address's throttle (:mod:`brainloc.sign_in_throttle`).
    """
    since = max(t for t in (at - FAILURE_WINDOW, user.locked_until, user.last_login_at) if t)
    record_event(
        session, action=Action.LOGIN_FAILED, actor_id=user.id, at=at, target_type=TARGET_USER,
        target_id=user.id, detail={"reason": reason}, client_address=client_key(client_address),
    )  # fmt: skip
    failures = count_events(session, actor_id=user.id, action=Action.LOGIN_FAILED, after=since)
    user.last_failed_login_at = at
    locked_now = failures >= MAX_FAILURES
    if locked_now:
        user.locked_until = at + LOCK_DURATION
        record_event(
            session, action=Action.ACCOUNT_LOCKED, actor_id=None, at=at, target_type=TARGET_USER,
            target_id=user.id, detail={"minutes": 15, "failures": failures},
        )  # fmt: skip
    user_store.save_user(session, user=user)
    return locked_now


def refuse_while_locked(user: User, *, at: datetime, field: str) -> None:
    """Refuse a password or code check of a signed-in user (the Account page) while the
    account is locked, as the sign-in page would."""
    if user.locked_until is not None and at < user.locked_until:
        minutes = int(LOCK_DURATION.total_seconds() // 60)
        raise AccountError(
            {field: f"Too many wrong codes or passwords: try again in {minutes} minutes."}
        )


def refuse_counted(
    session: Session, *, user: User, at: datetime, field: str, message: str, reason: str
) -> NoReturn:
    """Refuse a wrong password or two-step code typed by a signed-in user (the Account page).

    It counts as a failed sign-in (``reason``, audited), so someone at a session left open
    cannot guess the password or codes there faster than at the sign-in page. The record is
    committed here, because ``session_scope`` rolls back on the :class:`AccountError`.
    """
    record_login_failure(session, user=user, at=at, reason=f"{reason} (account page)")
    session.commit()
    raise AccountError({field: message})
