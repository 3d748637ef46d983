"""Automatic sign-out of a browser session left without activity (``BRAINLOC_IDLE_MINUTES``).

A workstation left open must not keep patient data on screen (HIPAA's "automatic logoff").
Every run of the app that a person caused (a click, an upload, a page load) counts as
activity. While someone is signed in, a timer in the sidebar (:func:`render_idle_timer`, a
fragment that reruns on its own and renders nothing) checks how long ago that was; when the
limit has passed it reruns the whole app, and :func:`expire_idle_session`, called by app.py
before the sign-in handling, signs the session out as the sign-out button does (its
remembered sign-ins are revoked, so a reload does not sign it in again) and the sign-in page
says why. The timer's own runs are not activity. The same timer also notices a session whose
sign-in was ended elsewhere (a password change, "End all other sessions"; ``ui.state``) and
reruns the app, which then shows the sign-in page, within one period even in an untouched tab.

The timer lives in the browser tab, so it stops when the tab is closed, and the browser's
"remember me" cookie would sign it in again later. So the activity is kept on the server too
(``users.last_active_at``, :func:`brainloc.auth.record_activity`) and a cookie of an account
idle past the limit is refused (:func:`brainloc.auth.user_from_cookie`). It is written at most
every :func:`activity_save_seconds` per session (a minute at the default limit), not on every
click; so the server's time may lag by that much and a cookie may be refused that much early.
It is the account's last activity in any of its sessions: a browser left alone is not refused
while the same account is in use in another.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import streamlit as st

from brainloc.auth import idle_limit, idle_past, record_activity, record_logout
from brainloc.settings import get_settings
from db.engine import session_scope
from ui.state import LOGOUT_PENDING_KEY, USER_ID_KEY, current_user

#: time.time() of the last run a person caused, while signed in.
LAST_ACTIVITY_KEY = "_brainloc_last_activity"
#: Set by the timer just before it reruns the app: that run is not activity.
TIMER_RUN_KEY = "_brainloc_idle_timer_run"
#: Minutes of the limit that signed this session out; the sign-in page reads it.
IDLE_NOTICE_KEY = "_brainloc_idle_signed_out"
#: How often the timer looks when automatic sign-out is off (only for sessions ended elsewhere).
SESSION_CHECK_SECONDS = 60.0
#: (user id, time.time()) of this session's last activity written to the database.
ACTIVITY_SAVED_KEY = "_brainloc_activity_saved"


def idle_limit_seconds() -> float | None:
    """The configured limit in seconds, or None when automatic sign-out is off."""
    limit = idle_limit(get_settings().idle_minutes)
    return None if limit is None else limit.total_seconds()


def idle_expired() -> bool:
    """Whether this session's last activity is older than the limit (it is about to be
    signed out by :func:`expire_idle_session`)."""
    return idle_past(
        limit=idle_limit_seconds(),
        last_activity=st.session_state.get(LAST_ACTIVITY_KEY),
        now=time.time(),
    )


def timer_period_seconds(limit: float) -> float:
    """How often the timer looks: a quarter of the limit, between 1 s and 60 s."""
    return min(60.0, max(1.0, limit / 4))


def activity_save_seconds(limit: float) -> float:
    """How often a session writes its activity to the database: a tenth of the limit, between
    1 s and 60 s (so a cookie is refused at most that much before the limit is really up)."""
    return min(60.0, max(1.0, limit / 10))


def _save_activity(user_id: int, *, now: float, limit: float) -> None:
    """Write this run's activity to ``users.last_active_at``, unless this session wrote it
    less than :func:`activity_save_seconds` ago."""
    saved = st.session_state.get(ACTIVITY_SAVED_KEY)
    if saved is not None and saved[0] == user_id and now - saved[1] < activity_save_seconds(limit):
        return
    with session_scope() as session:
        record_activity(session, user_id=user_id, at=datetime.fromtimestamp(now, tz=UTC))
    st.session_state[ACTIVITY_SAVED_KEY] = (user_id, now)


def idle_notice() -> str | None:
    """The sign-in page's explanation after an automatic sign-out, if there was one."""
    minutes = st.session_state.get(IDLE_NOTICE_KEY)
    if minutes is None:
        return None
    return (
        f"You were signed out after {minutes:g} minutes without activity, so that no patient "
        "data stays on an unattended screen. Sign in again to continue."
    )


def expire_idle_session() -> None:
    """Sign the session out when its last activity is older than the limit; otherwise record
    this run as activity (unless the timer caused it), in the session and, at most every
    :func:`activity_save_seconds`, in the database. Call before ``ui.auth.start_run``."""
    timer_run = st.session_state.pop(TIMER_RUN_KEY, False)
    limit = idle_limit_seconds()
    user_id = st.session_state.get(USER_ID_KEY)
    if user_id is None or limit is None:
        st.session_state.pop(LAST_ACTIVITY_KEY, None)
        st.session_state.pop(ACTIVITY_SAVED_KEY, None)
        return
    now = time.time()
    last = st.session_state.get(LAST_ACTIVITY_KEY)
    if idle_past(limit=limit, last_activity=last, now=now):
        with session_scope() as session:
            record_logout(session, user_id=int(user_id), reason="idle")
        st.session_state.pop(USER_ID_KEY, None)
        st.session_state.pop(LAST_ACTIVITY_KEY, None)
        st.session_state.pop(ACTIVITY_SAVED_KEY, None)
        st.session_state[LOGOUT_PENDING_KEY] = True  # start_run clears the library's state
        st.session_state[IDLE_NOTICE_KEY] = get_settings().idle_minutes
        return
    if last is None or not timer_run:
        st.session_state[LAST_ACTIVITY_KEY] = now
        _save_activity(int(user_id), now=now, limit=limit)
    st.session_state.pop(IDLE_NOTICE_KEY, None)


def timer_should_rerun(
    *, limit: float | None, last_activity: float | None, now: float, still_signed_in: bool
) -> bool:
    """Whether the timer reruns the whole app: the session has been idle past ``limit``, or
    its sign-in was ended elsewhere (then the rerun shows the sign-in page, so a tab nobody
    touches does not keep a patient's scan on screen after, say, a password change)."""
    return not still_signed_in or idle_past(limit=limit, last_activity=last_activity, now=now)


def render_idle_timer() -> None:
    """Start the timer for a signed-in session (app.py, after the navigation). With automatic
    sign-out off it still looks every :data:`SESSION_CHECK_SECONDS` whether the session's
    sign-in was ended elsewhere."""
    limit = idle_limit_seconds()
    period = timer_period_seconds(limit) if limit is not None else SESSION_CHECK_SECONDS

    @st.fragment(run_every=period)
    def _idle_timer() -> None:
        rerun = timer_should_rerun(
            limit=limit,
            last_activity=st.session_state.get(LAST_ACTIVITY_KEY),
            now=time.time(),
            still_signed_in=current_user() is not None,
        )
        if rerun:
            st.session_state[TIMER_RUN_KEY] = True
            st.rerun(scope="app")

    with st.sidebar:
        _idle_timer()
