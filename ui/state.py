"""Session-state keys and the current user, in one place.

Pages never read these keys directly; they call :func:`ui.guard.require_user`, which returns
the signed-in :class:`brainloc.auth.CurrentUser`. Tests sign a user in by setting
``st.session_state[USER_ID_KEY] = user.id`` and, for an account whose sign-ins were ended
(``sessions_ended_at``), ``SIGNED_IN_AT_KEY`` to a later moment, as a sign-in does.
"""

from __future__ import annotations

from dataclasses import replace

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
#: Set by the sign-out button; app.py finishes the sign-out in the same run. Its value
#: :data:`ENDED_ELSEWHERE` marks a sign-out because the account's sign-ins were ended.
LOGOUT_PENDING_KEY = "_brainloc_logout_pending"
#: Such a sign-out keeps the browser's sign-in cookie: if it predates the cut-off the server
#: refuses it anyway, and if not, another tab of this browser made the change and renewed it,
#: and deleting it would sign that tab out at its next reload too.
ENDED_ELSEWHERE = "ended elsewhere"
#: (user id, username, when) of a right password that still needs its two-step code.
TWO_STEP_PENDING_KEY = "_brainloc_two_step_pending"
#: A submitted two-step code waiting for app.py to check it.
CODE_ATTEMPT_KEY = "_brainloc_code_attempt"
#: When this browser session signed in (aware UTC datetime); a session older than its
#: account's ``sessions_ended_at`` is signed out (:func:`current_user`).
SIGNED_IN_AT_KEY = "_brainloc_signed_in_at"
#: Set when :func:`current_user` ended this session because its sign-ins were ended
#: elsewhere; the sign-in page says so.
ENDED_NOTICE_KEY = "_brainloc_session_ended"

#: The sign-in page's explanation after :data:`ENDED_NOTICE_KEY`.
SESSION_ENDED_NOTICE = (
    "You were signed out: this account's sign-ins were ended (its password or two-step "
    "sign-in was changed, all its sessions were ended, or an administrator changed the "
    "account). Sign in again to continue."
)


#: streamlit-authenticator's session keys and the keys of its cookie component's calls.
_SIGN_IN_LIBRARY_KEYS = frozenset(
    {"authentication_status", "name", "username", "email", "roles", "logout", "password_hint"}
    | {"init", "set", "delete", "get_all"}
)


def forget_user_state() -> None:
    """Forget everything this browser session holds for the user who was signed in: pages'
    results and uploads, new recovery codes, an administrator's one-time password, form
    fields. Called at every sign-out and sign-in, so nothing of one user reaches the next one
    in the same browser tab (a shared ward workstation). Only the sign-in machinery's own keys
    stay: those named ``_brainloc_…`` or ``brainloc_…`` here and in ``ui.idle`` and
    ``ui.navigation`` (notices such as why the session ended included) and the sign-in
    library's."""
    for key in list(st.session_state.keys()):
        name = str(key)
        if name.startswith(("_brainloc_", "brainloc_")) or name in _SIGN_IN_LIBRARY_KEYS:
            continue
        del st.session_state[key]


def current_user() -> CurrentUser | None:
    """The signed-in user, re-read from the database (so status changes apply at once).

    A session whose sign-ins were ended after it signed in (a password change or reset
    elsewhere, "End all other sessions") is signed out here, at its next interaction.
    """
    user_id = st.session_state.get(USER_ID_KEY)
    if user_id is None:
        return None
    with session_scope() as session:
        user = load_current_user(session, user_id=int(user_id))
    if user is None:
        st.session_state.pop(USER_ID_KEY, None)
        return None
    signed_in_at = st.session_state.get(SIGNED_IN_AT_KEY)
    if not user.signed_in_still(signed_in_at):
        st.session_state.pop(USER_ID_KEY, None)
        st.session_state.pop(SIGNED_IN_AT_KEY, None)
        # The next run clears the library's state and this session's data.
        st.session_state[LOGOUT_PENDING_KEY] = ENDED_ELSEWHERE
        st.session_state[ENDED_NOTICE_KEY] = True
        return None
    return replace(user, signed_in_at=signed_in_at)
