"""The Account page's "Sign-ins and account changes" section: the account's own security
record and "End all other sessions" (rules and queries in :mod:`brainloc.account_security`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from brainloc.account_security import end_other_sessions, security_events
from brainloc.auth import CurrentUser
from db.engine import session_scope
from db.models import ROLES
from ui.auth import keep_this_session, renew_cookie
from ui.guard import guarded_callback

#: One-shot: the result of "End all other sessions", and this browser's cookie to renew.
ENDED_KEY = "_security_other_sessions_ended"
SHOWN = 20


@guarded_callback(roles=ROLES, password_page=True)
def _end_other_sessions(user_id: int) -> None:
    with session_scope() as session:
        end_other_sessions(session, user_id=user_id)
    keep_this_session()
    st.session_state[ENDED_KEY] = True


def render_security_section(user: CurrentUser) -> None:
    """The signed-in ``user``'s own recent sign-ins and account changes."""
    st.subheader("Sign-ins and account changes")
    with session_scope() as session:
        events = security_events(session, user_id=user.id, limit=SHOWN)
    if any(event.alert for event in events):
        st.warning(
            "Marked below: a sign-in with your **right password but a wrong two-step code**, or "
            "a lockout after repeated failures. If that was not you, someone may know your "
            "password: change it above, and press **End all other sessions**.",
            icon=":material/warning:",
        )
    frame = pd.DataFrame(
        {
            "When (UTC)": [event.at.strftime("%Y-%m-%d %H:%M:%S") for event in events],
            "What": [event.description for event in events],
            "Flag": ["⚠" if event.alert else "" for event in events],
        }
    )
    st.dataframe(frame, hide_index=True, key="security_events")
    st.caption(f"The last {SHOWN} events of this account, newest first.")
    ended = st.session_state.pop(ENDED_KEY, False)
    if ended:
        renew_cookie()
        st.success("Every other sign-in of this account has ended; this browser stays signed in.")
    st.button(
        "End all other sessions",
        key="security_end_other_sessions",
        on_click=_end_other_sessions,
        args=(user.id,),
        help="Ends this account's sessions in every other browser (at their next click) and "
        "every remembered sign-in. This browser stays signed in.",
    )
