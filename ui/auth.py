"""Sign-in, sign-out and "remember me" through streamlit-authenticator 0.4.2.

``app.py`` calls :func:`start_run` once per run, before it builds the navigation. It
creates the authenticator (once per run: the library renders a cookie component whose key
must be unique in a run), then finishes whatever the widgets asked for in the previous
interaction, so the navigation that follows already reflects the new state:

* a submitted sign-in form: :func:`brainloc.accounts.check_login` applies the database
  lockout and the throttle of the browser's network address (:func:`client_address`;
  :mod:`brainloc.sign_in_throttle`) *before* the library's password check and records the
  outcome after it; on success the library's cookie is set in this same run (no
  ``st.rerun()``, which would drop the cookie component before it reaches the browser);
* a pressed sign-out button: the database revokes the user's remembered sign-ins, then the
  library clears its session keys and deletes the cookie, again without a rerun; if the
  browser keeps the cookie anyway, the revocation makes it worthless;
* a returning browser: its cookie is checked against the database before it signs anyone in
  (also against the idle limit: a cookie of an account idle past it is refused and the
  sign-in page says why, as after the idle timer's sign-out; :mod:`ui.idle`);
* every sign-in records when it happened (``SIGNED_IN_AT_KEY``: when this run read the
  accounts, before the password or cookie was checked), so that a session is signed out when
  its account's sign-ins are ended elsewhere, even in the same moment
  (``ui.state.current_user``);
* every sign-in and sign-out first clears the session of the previous user's state
  (``ui.state.forget_user_state``);
* two-step sign-in (:mod:`brainloc.two_step`): a right password for an account that uses it
  signs nobody in yet. The library's session keys are cleared again, the sign-in page asks
  for the app's code, and only an accepted code (:func:`brainloc.two_step.check_second_step`)
  signs the user in and sets the cookie, in the run that checks it.

The library's own login widget is not used: it keeps a per-process, never-expiring failure
counter and shows different messages for unknown users; its API-key features are never
enabled (no ``api_key``), so nothing is sent to a third-party server.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import streamlit as st
import streamlit_authenticator as stauth

from brainloc.accounts import check_login, normalise_username
from brainloc.auth import cookie_config, load_credentials, record_logout, user_from_cookie
from brainloc.settings import get_settings
from brainloc.two_step import check_second_step
from db.engine import session_scope
from db.migrate import DatabaseStateError, upgrade_known
from db.types import utc_now
from ui.idle import IDLE_NOTICE_KEY
from ui.state import (
    AUTHENTICATOR_KEY,
    CODE_ATTEMPT_KEY,
    ENDED_ELSEWHERE,
    ENDED_NOTICE_KEY,
    LOGIN_ATTEMPT_KEY,
    LOGIN_ERROR_KEY,
    LOGOUT_PENDING_KEY,
    SIGNED_IN_AT_KEY,
    TWO_STEP_PENDING_KEY,
    USER_ID_KEY,
    forget_user_state,
)

logger = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def prepare_database(url: str) -> bool:
    """Migrate the database to the newest schema, once per server process (a database this
    version cannot use raises :class:`db.migrate.DatabaseStateError`, and the next run tries
    again)."""
    upgrade_known(url)
    return True


def build_authenticator() -> stauth.Authenticate:
    """A fresh authenticator with the current accounts; call once per run (app.py)."""
    settings = get_settings()
    cookie = cookie_config(settings)
    with session_scope() as session:
        credentials = load_credentials(session)
    authenticator = stauth.Authenticate(
        credentials,
        cookie_name=cookie.name,
        cookie_key=cookie.key,
        cookie_expiry_days=cookie.expiry_days,
        auto_hash=False,
    )
    st.session_state[AUTHENTICATOR_KEY] = authenticator
    return authenticator


def _finish_login(authenticator: stauth.Authenticate, *, credentials_read_at: datetime) -> None:
    attempt = st.session_state.pop(LOGIN_ATTEMPT_KEY, None)
    if not attempt:
        return
    username, password = attempt

    def library_check(name: str, secret: str) -> bool:
        return bool(authenticator.authentication_controller.login(name, secret))

    with session_scope() as session:
        result = check_login(
            session, username=username, password=password, verify=library_check,
            client_address=client_address(),
        )  # fmt: skip
    if result.ok and result.second_step:
        # Not signed in yet: forget the library's sign-in until the code is accepted.
        authenticator.authentication_controller.logout()
        st.session_state[TWO_STEP_PENDING_KEY] = (
            result.user_id,
            normalise_username(username),
            credentials_read_at,
        )
    elif result.ok:
        _signed_in(authenticator, result.user_id, credentials_read_at=credentials_read_at)
    else:
        st.session_state["authentication_status"] = None
        st.session_state[LOGIN_ERROR_KEY] = result.message


def client_address() -> str | None:
    """The browser's network address for the address throttles of sign-in and registration
    (the Register page calls it too): ``st.context.ip_address``, the peer of the websocket
    after Streamlit's server (uvicorn) has applied a trusted proxy's ``X-Forwarded-For``. None
    when unknown, and for a loopback peer (Streamlit's own rule), which the throttles leave
    alone. Anything but a string counts as unknown too:
    under AppTest, Streamlit answers with its stand-in runtime's placeholder object."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def _session_started(user_id: int | None, *, credentials_read_at: datetime) -> None:
    """Record that this browser session is signed in as ``user_id``, with nothing left of a
    previous user's session.

    The sign-in counts from ``credentials_read_at``, when the password or cookie was checked
    against the database, not from now: a password changed in between (which ends older
    sign-ins) then ends this session too, at its next run.
    """
    forget_user_state()
    st.session_state[USER_ID_KEY] = user_id
    st.session_state[SIGNED_IN_AT_KEY] = credentials_read_at
    st.session_state.pop(ENDED_NOTICE_KEY, None)


def keep_this_session() -> None:
    """After this session ended the account's other sign-ins (a password change, two-step
    sign-in turned on, "End all other sessions"): it goes on as if signed in just now. Call in
    the action's callback, before the next run checks the session; then :func:`renew_cookie`
    in the page gives this browser a cookie the cut-off does not refuse."""
    st.session_state[SIGNED_IN_AT_KEY] = utc_now()


def served_over_https() -> bool:
    """Whether this browser session reached the app over HTTPS (its address in the browser, or
    the reverse proxy's ``X-Forwarded-Proto``)."""
    url = st.context.url or ""
    forwarded = str(st.context.headers.get("X-Forwarded-Proto") or "")
    return url.startswith("https://") or forwarded.lower() == "https"


def set_remember_cookie(authenticator: stauth.Authenticate) -> None:
    """Set the "remember me" cookie, as the library's ``set_cookie`` does, but ``Secure`` when
    the app is served over HTTPS, so the browser never sends it over plain HTTP (a first
    ``http://`` visit before the redirect). The library sets it from the page's script, so it
    cannot be ``HttpOnly``; it is ``SameSite=Strict``."""
    model = authenticator.cookie_controller.cookie_model
    if model.cookie_expiry_days == 0:
        return
    model.exp_date = model._set_exp_date()
    model.cookie_manager.set(
        model.cookie_name,
        model._token_encode(),
        expires_at=datetime.now() + timedelta(days=model.cookie_expiry_days),
        secure=served_over_https(),
        same_site="strict",
    )


def _signed_in(
    authenticator: stauth.Authenticate, user_id: int | None, *, credentials_read_at: datetime
) -> None:
    """Sign ``user_id`` in for this browser session and set its "remember me" cookie."""
    _session_started(user_id, credentials_read_at=credentials_read_at)
    st.session_state["logout"] = None
    set_remember_cookie(authenticator)


def _finish_second_step(authenticator: stauth.Authenticate) -> None:
    # The sign-in counts from the password's check (``pending``): sign-ins ended after it (a
    # password change meanwhile) refuse the code, see check_second_step.
    code = st.session_state.pop(CODE_ATTEMPT_KEY, None)
    pending = st.session_state.get(TWO_STEP_PENDING_KEY)
    if code is None or pending is None:
        return
    user_id, username, checked_at = pending
    with session_scope() as session:
        result = check_second_step(
            session, user_id=user_id, code=code, password_checked_at=checked_at,
            client_address=client_address(),
        )  # fmt: skip
    if result.ok:
        st.session_state.pop(TWO_STEP_PENDING_KEY, None)
        # The library's token sign-in sets the username its cookie is signed for.
        authenticator.authentication_controller.login(token={"username": username})
        _signed_in(authenticator, result.user_id, credentials_read_at=checked_at)
        return
    st.session_state[LOGIN_ERROR_KEY] = result.message
    if result.start_over:
        st.session_state.pop(TWO_STEP_PENDING_KEY, None)


def _finish_logout(authenticator: stauth.Authenticate) -> None:
    pending = st.session_state.pop(LOGOUT_PENDING_KEY, False)
    if not pending:
        return
    authenticator.authentication_controller.logout()
    if pending != ENDED_ELSEWHERE:
        authenticator.cookie_controller.delete_cookie()
    forget_user_state()


def _restore_from_cookie(
    authenticator: stauth.Authenticate, *, credentials_read_at: datetime
) -> None:
    if st.session_state.get(USER_ID_KEY) is not None or st.session_state.get("logout"):
        return
    token = authenticator.cookie_controller.get_cookie()
    if not token:
        return
    with session_scope() as session:
        result = user_from_cookie(session, token=token, cookie=cookie_config(get_settings()))
    if result.ok:
        authenticator.authentication_controller.login(token=token)
        _session_started(result.user_id, credentials_read_at=credentials_read_at)
    else:
        logger.info("refused a sign-in cookie: %s", result.message)
        if result.idle:
            st.session_state[IDLE_NOTICE_KEY] = get_settings().idle_minutes
        authenticator.cookie_controller.delete_cookie()
        # The browser keeps sending the cookie for the rest of this session; stop reading it.
        st.session_state["logout"] = True


def start_run() -> stauth.Authenticate:
    """Everything sign-in related that must happen before the navigation is built. A setting
    or a database the server cannot use stops the run with the operator's message, on every
    page alike (a page file may run without app.py)."""
    try:
        prepare_database(get_settings().database_url)
    except (ValueError, DatabaseStateError) as error:
        logger.error("cannot start: %s", error)
        st.error(f"BrainLoc cannot start: {error}. Fix it and restart the server.")
        st.stop()
    # Before the accounts are read: a sign-in in this run counts from here (_session_started).
    credentials_read_at = utc_now()
    authenticator = build_authenticator()
    _finish_logout(authenticator)
    _finish_login(authenticator, credentials_read_at=credentials_read_at)
    _finish_second_step(authenticator)
    _restore_from_cookie(authenticator, credentials_read_at=credentials_read_at)
    return authenticator


def _on_login_submit() -> None:
    # Runs before the next script run: hand the values to start_run and clear the password
    # field, so the password never stays in the form.
    st.session_state.pop(LOGIN_ERROR_KEY, None)
    st.session_state[LOGIN_ATTEMPT_KEY] = (
        st.session_state.get("login_username", ""),
        st.session_state.get("login_password", ""),
    )
    st.session_state["login_password"] = ""


def _on_code_submit() -> None:
    st.session_state.pop(LOGIN_ERROR_KEY, None)
    st.session_state[CODE_ATTEMPT_KEY] = st.session_state.get("two_step_code", "")
    st.session_state["two_step_code"] = ""


def _on_code_cancel() -> None:
    st.session_state.pop(LOGIN_ERROR_KEY, None)
    pending = st.session_state.pop(TWO_STEP_PENDING_KEY, None)
    if pending:
        # The sign-in form was not on the page, so Streamlit forgot what was typed in it.
        st.session_state["login_username"] = pending[1]


def _render_code_form(error: str | None) -> None:
    """The second step: the authenticator app's code (or a recovery code)."""
    with st.form("two_step_form"):
        st.subheader("Two-step sign-in")
        st.markdown(
            "Open your authenticator app and type the **6-digit code** it shows for BrainLoc. "
            "Lost your phone? Type one of your **recovery codes** instead."
        )
        st.text_input("Code", key="two_step_code", autocomplete="one-time-code", max_chars=24)
        st.form_submit_button(
            "Continue", key="two_step_submit", type="primary", on_click=_on_code_submit
        )
    if error:
        st.error(error)
    st.button("Back to the password", key="two_step_cancel", on_click=_on_code_cancel)
    st.caption(
        "No phone and no recovery code? Your BrainLoc administrator can turn two-step sign-in "
        "off for your account after confirming it is you."
    )


def awaiting_code() -> bool:
    """True between a right password and its two-step code (the sign-in page shows the code
    form then)."""
    return bool(st.session_state.get(TWO_STEP_PENDING_KEY))


def render_login_form() -> None:
    """The sign-in form (our own widgets; the check itself runs in :func:`start_run`), or,
    after a right password for an account with two-step sign-in, the form for its code."""
    # The message stays until the next attempt: the cookie component reruns the script right
    # after a page load, and a message shown only once would vanish before it is read.
    error = st.session_state.get(LOGIN_ERROR_KEY)
    if awaiting_code():
        _render_code_form(error)
        return
    with st.form("login_form"):
        st.subheader("Sign in")
        st.text_input("Username", key="login_username", autocomplete="username")
        st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        st.form_submit_button(
            "Sign in", key="login_submit", type="primary", on_click=_on_login_submit
        )
    if error:
        st.error(error)


def renew_cookie() -> None:
    """Issue a fresh "remember me" cookie for the signed-in user (after a password change or
    anything else that refuses every older cookie; see :func:`keep_this_session`)."""
    authenticator = st.session_state.get(AUTHENTICATOR_KEY)
    if authenticator is not None and st.session_state.get("username"):
        set_remember_cookie(authenticator)


def _on_logout() -> None:
    user_id = st.session_state.pop(USER_ID_KEY, None)
    if user_id is not None:
        with session_scope() as session:
            record_logout(session, user_id=int(user_id))
    st.session_state[LOGOUT_PENDING_KEY] = True


def render_logout_button() -> None:
    """The sign-out button (sidebar); the sign-out is finished by :func:`start_run`."""
    st.sidebar.button("Sign out", key="logout_button", on_click=_on_logout, width="stretch")
