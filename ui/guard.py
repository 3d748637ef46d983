"""The guard every file in ``pages/`` calls first.

Streamlit 1.67 serves ``/<page>`` for every file in ``pages/`` and, on a freshly started
server, runs that file *without running app.py* until some session has loaded ``/`` (and
Streamlit's AppTest does the same on every rerun of a page). So a page cannot rely on the
navigation having hidden it: it checks the signed-in user itself, and when the check fails
nothing of the page is rendered. When app.py did not run, the guard first does app.py's
sign-in work (:func:`ui.auth.start_run`), and a signed-out visitor is sent to app.py, which
shows only the sign-in page.

Usage, as the first statements of a page::

    from ui.guard import require_user
    user = require_user(roles=("practitioner",))   # user.id, user.full_name, ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from brainloc.auth import CurrentUser
from db.models import ROLE_PRACTITIONER, STATUS_APPROVED
from ui.auth import start_run
from ui.idle import idle_expired
from ui.navigation import NEXT_PARAM, url_path_of
from ui.state import SHELL_KEY, current_user

ENTRY_SCRIPT = "app.py"
PASSWORD_SCRIPT = "pages/account.py"


def _shell_ran() -> bool:
    """True when app.py runs this page this very run; otherwise do app.py's sign-in work
    here (a page file run on its own: the URL trap, or an AppTest rerun of a page)."""
    if st.session_state.get(SHELL_KEY):
        return True
    start_run()
    return False


def _to_entry_page() -> None:
    """Hand over to app.py, which shows the sign-in; if even that fails, show only a hint.

    The page asked for travels along as ``?next=<page>`` (with the page's own query
    parameters, e.g. a case ``id``), so that app.py opens it once the visitor has signed in.
    """
    query = st.query_params.to_dict()
    requested = url_path_of(st.context.url)
    if requested:
        query[NEXT_PARAM] = requested
    try:
        st.switch_page(ENTRY_SCRIPT, query_params=query)
    except StreamlitAPIException:
        st.info("Please sign in on the [BrainLoc start page](/).")
        st.stop()


#: Shown instead of any page but Account while the user's password was chosen by someone else.
PASSWORD_CHANGE_NEEDED = (
    "Choose your own password on the **Account** page first: the one you signed in with "
    "was generated for you. The other pages open once it is changed."
)

#: Shown instead of any page but Account while a required two-step sign-in is not set up.
TWO_STEP_NEEDED = (
    "Set up two-step sign-in on the **Account** page first: this BrainLoc requires it of "
    "your account. The other pages open once it is on."
)


def require_user(
    *,
    roles: Sequence[str] = (ROLE_PRACTITIONER,),
    statuses: Sequence[str] = (STATUS_APPROVED,),
    password_page: bool = False,
) -> CurrentUser:
    """Return the signed-in user if their role and status allow this page; otherwise show a
    short refusal and stop the script, so nothing else of the page renders.

    A user whose password must change (``must_change_password``), or who must set up a
    required two-step sign-in, is sent to the Account page (which passes
    ``password_page=True``); a page run without app.py only says so, and renders nothing."""
    shell_ran = _shell_ran()
    user = current_user()
    if user is None:
        if not shell_ran:
            _to_entry_page()
        st.warning("Please sign in to use BrainLoc.")
        st.stop()
    if not _role_allows(user, roles=roles, statuses=statuses):
        st.error("You do not have access to this page.")
        st.stop()
    if user.account_page_only and not password_page:
        if shell_ran:
            st.switch_page(PASSWORD_SCRIPT)
        st.warning(PASSWORD_CHANGE_NEEDED if user.must_change_password else TWO_STEP_NEEDED)
        st.stop()
    return user


def require_signed_out() -> None:
    """For the sign-in and registration pages: only shown to visitors who are signed out."""
    shell_ran = _shell_ran()
    if current_user() is not None:
        if not shell_ran:
            _to_entry_page()
        st.info("You are signed in. Use the menu on the left.")
        st.stop()


def _role_allows(user: CurrentUser, *, roles: Sequence[str], statuses: Sequence[str]) -> bool:
    return user.role in roles and user.status in statuses


def guarded_callback(
    *,
    roles: Sequence[str] = (ROLE_PRACTITIONER,),
    statuses: Sequence[str] = (STATUS_APPROVED,),
    password_page: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., None]]:
    """Decorate a widget callback that saves or records something with the page's own check.

    Streamlit runs a button's callback *before* the script, so before app.py and the page
    guard look at the session: without this, a session whose account was disabled, whose
    sign-ins were ended elsewhere (a password change), or which sat idle past the limit could
    still save a note or issue a report with its click. The decorated callback does nothing
    unless :func:`require_user` with the same arguments would let the page render; the run
    that follows then signs the session out or shows what the account may see.
    """

    def decorate(callback: Callable[..., Any]) -> Callable[..., None]:
        @functools.wraps(callback)
        def checked(*args: Any, **kwargs: Any) -> None:
            if idle_expired():
                return
            user = current_user()
            if user is None or not _role_allows(user, roles=roles, statuses=statuses):
                return
            if user.account_page_only and not password_page:
                return
            callback(*args, **kwargs)

        return checked

    return decorate
