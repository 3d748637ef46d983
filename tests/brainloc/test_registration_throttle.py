"""The registration throttle by client address, on a real database: both limits, refusal
before anything is checked or saved, other and unknown addresses, the windows, the message
that tells nothing about the form, what the audit log keeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from brainloc import accounts
from brainloc.registration_throttle import (
    MAX_ADDRESS_REFUSALS,
    MAX_ADDRESS_REGISTRATIONS,
    REFUSAL_WINDOW,
    REGISTRATION_WINDOW,
    TOO_MANY_REFUSALS,
    TOO_MANY_REGISTRATIONS,
)
from db import audit
from db import users as user_store
from db.engine import session_scope
from tests.brainloc.test_accounts import GOOD  # jdoe / jane.doe@hospital.org, as typed
from tests.brainloc.test_sign_in_throttle import Clock

CLINIC = "198.51.100.20"
NEIGHBOUR = "198.51.100.21"


def _form(number: int) -> accounts.Registration:
    """A valid registration of a new colleague, ``doc<number>``."""
    return replace(GOOD, username=f"doc{number}", email=f"doc{number}@hospital.org")


def _register(form, clock, address):
    with session_scope() as session:
        return accounts.register_practitioner(
            session, form=form, clock=clock, client_address=address
        )


def _refused(form, clock, address) -> accounts.AccountError:
    with pytest.raises(accounts.AccountError) as caught:
        _register(form, clock, address)
    return caught.value


def _register_many(clock, address, count, *, first=0):
    """``count`` colleagues registered from ``address``, a minute apart."""
    for number in range(first, first + count):
        _register(_form(number), clock, address)
        clock.advance(minutes=1)


def _refuse_many(clock, address, count):
    """``count`` refused registrations from ``address``, taken and invalid in turn, a second
    apart (``jdoe`` must exist)."""
    taken = replace(GOOD, email="someone.else@hospital.org")  # the username is taken
    invalid = replace(GOOD, username="newcomer", email="newcomer@hospital.org", password="x")
    for attempt in range(count):
        error = _refused(taken if attempt % 2 else invalid, clock, address)
        assert not isinstance(error, accounts.RegistrationThrottled)
        clock.advance(seconds=1)


def _users() -> set[str]:
    with session_scope() as session:
        return {user.username for user in user_store.list_users(session)}


def _newest_event():
    with session_scope() as session:
        (event,) = audit.list_events(session, limit=1)
    return event


@pytest.fixture
def jdoe(app_env):
    """An existing account, ``jdoe`` / ``jane.doe@hospital.org``, registered from nowhere."""
    return _register(GOOD, Clock(), None)


def test_an_address_at_the_registration_limit_is_refused_before_anything_is_checked(
    app_env, monkeypatch
):
    clock = Clock()
    _register_many(clock, CLINIC, MAX_ADDRESS_REGISTRATIONS)  # a clinic's colleagues: all fine
    before = _users()
    assert len(before) == MAX_ADDRESS_REGISTRATIONS

    def never(*args, **kwargs):
        raise AssertionError("checked while throttled")

    for name in ("password_problems", "_identity_errors", "_taken", "hash_password"):
        monkeypatch.setattr(accounts, name, never)
    error = _refused(_form(99), clock, CLINIC)
    assert isinstance(error, accounts.RegistrationThrottled)
    assert error.message == (
        "Registration refused: too many accounts were registered from this network address. "
        "Try again in 50 minutes."  # the first of the ten leaves the hour 50 minutes on
    )
    assert _users() == before  # nothing saved
    event = _newest_event()
    assert (event.action, event.actor_id, event.client_address) == ("register_refused", None, None)
    assert event.detail == {"reason": TOO_MANY_REGISTRATIONS, "address": CLINIC}


def test_an_address_at_the_refusal_limit_is_refused_even_a_valid_registration(jdoe):
    clock = Clock()
    _refuse_many(clock, CLINIC, MAX_ADDRESS_REFUSALS)
    error = _refused(_form(1), clock, CLINIC)  # valid and new, but refused all the same
    assert isinstance(error, accounts.RegistrationThrottled)
    assert "too many registrations from this network address were refused" in error.message
    assert "Try again in 15 minutes." in error.message
    assert _users() == {"jdoe"}
    assert _newest_event().detail == {"reason": TOO_MANY_REFUSALS, "address": CLINIC}


def test_other_addresses_and_an_unknown_address_are_not_refused(jdoe):
    clock = Clock()
    _register_many(clock, CLINIC, MAX_ADDRESS_REGISTRATIONS)
    assert isinstance(_refused(_form(50), clock, CLINIC), accounts.RegistrationThrottled)
    assert _register(_form(51), clock, NEIGHBOUR).username == "doc51"
    assert _register(_form(52), clock, None).username == "doc52"
    _refuse_many(clock, NEIGHBOUR, MAX_ADDRESS_REFUSALS)
    assert isinstance(_refused(_form(53), clock, NEIGHBOUR), accounts.RegistrationThrottled)
    assert _register(_form(54), clock, "198.51.100.22").username == "doc54"
    assert _register(_form(55), clock, None).username == "doc55"


def test_an_unknown_address_is_never_throttled_and_its_events_count_for_no_address(jdoe):
    clock = Clock()
    _refuse_many(clock, None, MAX_ADDRESS_REFUSALS + 5)
    _refuse_many(clock, "  ", 3)  # blank is unknown too
    _register_many(clock, None, MAX_ADDRESS_REGISTRATIONS + 2)
    assert _register(_form(99), clock, CLINIC).username == "doc99"
    with session_scope() as session:
        unknown = audit.list_events(session, actions=["register", "register_refused"], limit=100)
    unknown = [event for event in unknown if event.created_at < clock()]
    assert len(unknown) == 1 + MAX_ADDRESS_REFUSALS + 5 + 3 + MAX_ADDRESS_REGISTRATIONS + 2
    assert all(e.client_address is None and "address" not in e.detail for e in unknown)


def test_the_registration_limit_ends_when_its_registrations_leave_the_hour(app_env):
    clock = Clock()
    first = clock()
    _register_many(clock, CLINIC, MAX_ADDRESS_REGISTRATIONS)  # 10 minutes in all
    clock.advance(minutes=30)
    assert "Try again in 20 minutes." in _refused(_form(20), clock, CLINIC).message
    # Refusals by the throttle count for nothing, so trying on does not push the end away.
    clock.now = first + REGISTRATION_WINDOW - timedelta(seconds=1)
    assert "Try again in 1 minute." in _refused(_form(20), clock, CLINIC).message
    clock.now = first + REGISTRATION_WINDOW
    assert _register(_form(20), clock, CLINIC).username == "doc20"
    # The second of the ten is still in the window: the eleventh filled the hour again.
    assert isinstance(_refused(_form(21), clock, CLINIC), accounts.RegistrationThrottled)


def test_the_refusal_limit_ends_when_its_refusals_leave_the_window(jdoe):
    clock = Clock()
    first = clock()
    _refuse_many(clock, CLINIC, MAX_ADDRESS_REFUSALS)
    clock.now = first + REFUSAL_WINDOW - timedelta(seconds=1)
    assert isinstance(_refused(_form(1), clock, CLINIC), accounts.RegistrationThrottled)
    clock.now = first + REFUSAL_WINDOW
    assert _register(_form(1), clock, CLINIC).username == "doc1"


def test_refusals_spread_beyond_the_window_never_refuse_the_address(jdoe):
    clock = Clock()
    for _ in range(3):
        _refuse_many(clock, CLINIC, MAX_ADDRESS_REFUSALS - 1)
        clock.advance(minutes=16)
    assert _register(_form(1), clock, CLINIC).username == "doc1"


def test_the_refusal_does_not_tell_whether_the_username_or_email_exists(jdoe):
    clock = Clock()
    _refuse_many(clock, CLINIC, MAX_ADDRESS_REFUSALS)
    forms = [
        replace(GOOD, email="other@hospital.org"),  # the username is taken
        replace(GOOD, username="other"),  # the email is taken
        GOOD,  # both
        _form(7),  # neither
        replace(_form(8), password="x", email="nope"),  # invalid
    ]
    refusals = [_refused(form, clock, CLINIC) for form in forms]
    assert all(isinstance(error, accounts.RegistrationThrottled) for error in refusals)
    assert len({(error.message, tuple(error.errors.items())) for error in refusals}) == 1
    message = refusals[0].message
    assert accounts.USERNAME_TAKEN not in message and accounts.EMAIL_TAKEN not in message
    assert "jdoe" not in message and "hospital.org" not in message


def test_every_registration_and_refusal_records_its_address_and_nothing_typed(jdoe):
    clock = Clock()
    _register(_form(1), clock, "2001:DB8:0::1")
    _refused(replace(GOOD, email="x@hospital.org"), clock, "::ffff:192.0.2.9")
    _refused(replace(_form(2), password="secret-typo", password_repeat="other"), clock, CLINIC)
    with session_scope() as session:
        events = audit.list_events(session, actions=["register", "register_refused"], limit=10)
    summary = [(e.action, e.client_address, e.detail) for e in events[::-1]]
    assert summary == [
        ("register", None, {}),  # jdoe, from an unknown address
        ("register", "2001:db8::1", {"address": "2001:db8::1"}),
        ("register_refused", "192.0.2.9", {"reason": "username taken", "address": "192.0.2.9"}),
        ("register_refused", CLINIC, {"reason": "invalid password", "address": CLINIC}),
    ]


def test_a_registration_taken_meanwhile_is_audited_as_a_refusal(app_env, monkeypatch):
    """Two registrations of one username in the same moment: the database refuses the second,
    which counts towards its address like any other refusal."""
    clock = Clock()
    monkeypatch.setattr(accounts, "_taken", lambda session, **names: {})  # both see it free
    _register(GOOD, clock, NEIGHBOUR)
    error = _refused(replace(GOOD, email="other@hospital.org"), clock, CLINIC)
    assert error.errors == {
        "username": "This username or email was just registered; choose another."
    }
    event = _newest_event()
    assert (event.action, event.client_address) == ("register_refused", CLINIC)
    assert event.detail == {"reason": "username or email taken meanwhile", "address": CLINIC}
    assert _users() == {"jdoe"}
