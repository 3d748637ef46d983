"""The guard every file in ``pages/`` calls first.

Streamlit 1.67 serves ``/<page>`` for every file in ``pages/`` and, on a freshly started
server, runs that file *without running app.py* until some session has loaded ``/``. So a
page cannot rely on the navigation having hidden it: it checks the signed-in user itself,
and when the check fails nothing of the page is rendered.

Usage, as the first statements of a page::

    from ui.guard import require_user
    user = require_user(roles=("practitioner",))   # user.id, user.full_name, ...
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from streamlit.errors import StreamlitAPIException

from brainloc.auth import CurrentUser
from db.models import ROLE_PRACTITIONER, STATUS_APPROVED
from ui.state import SHELL_KEY, current_user

ENTRY_SCRIPT = "app.py"


def _ensure_shell() -> None:
    """Hand a page that runs without app.py (the URL trap) over to app.py, which shows
    the sign-in; if even that fails, show only a sign-in hint."""
    if st.session_state.get(SHELL_KEY):
        return
    try:
        st.switch_page(ENTRY_SCRIPT)
    except StreamlitAPIException:
        st.info("Please sign in on the [BrainLoc start page](/).")
        st.stop()


def require_user(
    *,
    roles: Sequence[str] = (ROLE_PRACTITIONER,),
    statuses: Sequence[str] = (STATUS_APPROVED,),
) -> CurrentUser:
    """Return the signed-in user if their role and status allow this page; otherwise show a
    short refusal and stop the script, so nothing else of the page renders."""
    _ensure_shell()
    user = current_user()
    if user is None:
        st.warning("Please sign in to use BrainLoc.")
        st.stop()
    if user.role not in roles or user.status not in statuses:
        st.error("You do not have access to this page.")
        st.stop()
    return user


def require_signed_out() -> None:
    """For the sign-in and registration pages: only shown to visitors who are signed out."""
    _ensure_shell()
    if current_user() is not None:
        st.info("You are signed in. Use the menu on the left.")
        st.stop()
