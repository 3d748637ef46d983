"""Session-state keys and the current user, in one place.

Pages never read these keys directly; they call :func:`ui.guard.require_user`, which returns
the signed-in :class:`brainloc.auth.CurrentUser`. Tests sign a user in by setting
``st.session_state[USER_ID_KEY] = user.id``.
"""

from __future__ import annotations

import streamlit as st

from brainloc.auth import CurrentUser, load_current_user
from db.engine import session_scope

#: The signed-in user's id (int). The only sign-in state the app trusts.
USER_ID_KEY = "brainloc_user_id"
#: Present only while app.py runs a page; missing when a page file runs on its own (URL trap).
SHELL_KEY = "_brainloc_shell"
#: The authenticator built by app.py for the current run.
AUTHENTICATOR_KEY = "_brainloc_authenticator"
#: A submitted (username, password) waiting for app.py to check it.
LOGIN_ATTEMPT_KEY = "_brainloc_login_attempt"
#: The message of the last failed sign-in, shown once by the login form.
LOGIN_ERROR_KEY = "_brainloc_login_error"
#: Set by the sign-out button; app.py finishes the sign-out in the same run.
LOGOUT_PENDING_KEY = "_brainloc_logout_pending"
#: (user id, username, when) of a right password that still needs its two-step code.
TWO_STEP_PENDING_KEY = "_brainloc_two_step_pending"
#: A submitted two-step code waiting for app.py to check it.
CODE_ATTEMPT_KEY = "_brainloc_code_attempt"


def current_user() -> CurrentUser | None:
    """The signed-in user, re-read from the database (so status changes apply at once)."""
    user_id = st.session_state.get(USER_ID_KEY)
    if user_id is None:
        return None
    with session_scope() as session:
        user = load_current_user(session, user_id=int(user_id))
    if user is None:
        st.session_state.pop(USER_ID_KEY, None)
    return user
