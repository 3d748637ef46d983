"""Which pages each user gets: routed by ``st.navigation`` and listed in the sidebar menu.

Signed out: sign in, register. Pending, rejected or disabled: the status page only.
Approved practitioner: the clinical pages and the account page. Administrator: accounts
administration and the account page. Anyone whose password was generated for them (the demo
account), or who must set up a required two-step sign-in, gets no menu until that is done:
every page sends them to the account page (ui.guard). Clinical pages whose file has not
landed yet are left out, so the app runs while features are added. Each page still guards
itself.

A page URL opened while signed out (a bookmark, a link in an e-mail) shows the sign-in and,
once signed in, the page itself, also on a server nobody has visited yet: the guard then
carries the page as ``?next=`` and :func:`continue_to_requested_page` opens it, but only if it
is in the user's own menu.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from brainloc.auth import CurrentUser
from db.models import ROLE_ADMIN, ROLE_PRACTITIONER, STATUS_APPROVED

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class PageEntry:
    """One screen: its file in pages/, menu title, icon and URL path."""

    file: str
    title: str
    icon: str
    url_path: str


LOGIN = PageEntry("pages/login.py", "Sign in", ":material/login:", "login")
REGISTER = PageEntry("pages/register.py", "Register", ":material/person_add:", "register")
STATUS = PageEntry("pages/status.py", "Account status", ":material/hourglass_top:", "status")
ACCOUNT = PageEntry("pages/account.py", "Account", ":material/manage_accounts:", "account")
ADMIN = PageEntry("pages/admin.py", "Admin", ":material/admin_panel_settings:", "admin")
PRACTITIONER_PAGES = (
    PageEntry("pages/analyze.py", "Analyze", ":material/biotech:", "analyze"),
    PageEntry("pages/case.py", "Case", ":material/folder_open:", "case"),
    PageEntry("pages/history.py", "History", ":material/history:", "history"),
    PageEntry("pages/activity.py", "Recent activity", ":material/schedule:", "activity"),
    PageEntry("pages/model_card.py", "Model card", ":material/description:", "model-card"),
)


#: Query parameter that carries a bookmarked page through the sign-in (``/?next=history``).
NEXT_PARAM = "next"
ALL_PAGES = (LOGIN, REGISTER, STATUS, ACCOUNT, ADMIN, *PRACTITIONER_PAGES)


def url_path_of(url: str | None) -> str | None:
    """The page a browser URL (``st.context.url``: no query, no anchor) names, if it is ours.

    ``http://host:8501/history`` -> ``"history"``; the root URL, an unknown path or None ->
    None. Only the last segment counts, so the app may be served below a path prefix.
    """
    if not url:
        return None
    segment = url.rstrip("/").rsplit("/", 1)[-1]
    return segment if any(page.url_path == segment for page in ALL_PAGES) else None


def next_page_for(user: CurrentUser | None, url_path: str | None) -> PageEntry | None:
    """The page a sign-in should continue to: ``url_path``'s entry when ``user`` may see it.

    Anything else (no user, an unknown path, a page outside the user's role or status, the
    sign-in pages themselves) gives None, so ``next`` can never open more than the menu would.
    """
    if user is None or not url_path:
        return None
    return next((page for page in entries_for(user) if page.url_path == url_path), None)


def entries_for(user: CurrentUser | None) -> list[PageEntry]:
    """The pages ``user`` may see, in menu order; the first one is the default page."""
    if user is None:
        return [LOGIN, REGISTER]
    if user.status != STATUS_APPROVED:
        return [STATUS]
    if user.role == ROLE_ADMIN:
        return [ADMIN, ACCOUNT]
    if user.role == ROLE_PRACTITIONER:
        available = [page for page in PRACTITIONER_PAGES if (REPO_ROOT / page.file).is_file()]
        return [*available, ACCOUNT]
    return [STATUS]


def build_navigation(user: CurrentUser | None, *, signing_in: bool = False) -> st.navigation:
    """``st.navigation`` over the pages ``user`` may see (the first is the default), and the
    sidebar menu that lists them (:func:`_render_menu`).

    For a signed-out visitor every other page's URL is a hidden alias of the sign-in page:
    a bookmarked ``/history`` shows the sign-in (not a "page not found" box) and, once
    signed in, the same URL opens the page itself. Streamlit serves the default page at "/"
    only, while its ``url_path`` stays reserved and unserved, so the default page reserves
    :func:`_reserved_path` and its own path (``/analyze``, ``/admin``, ``/login``) is a hidden
    alias of it, which moves to "/" (except in the run that signs the user in, see
    :func:`continue_to_requested_page`). (On a server nobody has visited yet,
    Streamlit runs the page file without app.py; its guard then sends the visitor to
    ``/?next=history``, and app.py continues there after the sign-in.)
    """
    entries = entries_for(user)
    default, *others = entries
    pages = [
        st.Page(
            default.file,
            title=default.title,
            icon=default.icon,
            url_path=_reserved_path(default),
            default=True,
        ),
        *(
            st.Page(entry.file, title=entry.title, icon=entry.icon, url_path=entry.url_path)
            for entry in others
        ),
    ]
    # Hidden routes: signed out, every page's URL shows the sign-in; signed in, the default
    # page's own URL shows it. Links and switches name a file and resolve to the first page
    # registered with it, never to one of these.
    target, aliased = (LOGIN, ALL_PAGES) if user is None else (default, (default,))
    routed = {entry.url_path for entry in others}
    pages += [
        st.Page(target.file, title=target.title, url_path=entry.url_path, visibility="hidden")
        for entry in aliased
        if entry.url_path not in routed
    ]
    # The app draws its own menu: Streamlit's sidebar menu is switched off
    # (client.showSidebarNavigation), because on a server nobody has visited yet it would
    # list every file in pages/ to a signed-out visitor.
    navigation = st.navigation(pages, position="hidden")
    _render_menu(entries, user)
    if user is not None and not signing_in and navigation.url_path == default.url_path:
        # On the hidden route, move to "/", where the menu marks the page as the open one.
        # Not while a sign-in is processed: switching then would drop the sign-in cookie.
        st.switch_page(default.file, query_params=st.query_params.to_dict())
    return navigation


def _reserved_path(entry: PageEntry) -> str:
    """The ``url_path`` the default page reserves: one per page, so that the page identity
    Streamlit derives from it changes with the page (the sign-in page before a sign-in and
    the Analyze page after it are two pages, as they were when each used its own path)."""
    return f"{entry.url_path}-start"


def _render_menu(entries: list[PageEntry], user: CurrentUser | None) -> None:
    """The sidebar menu: a link to each of ``entries``, in menu order.

    None while a user must change a generated password or set up a required two-step
    sign-in: every page then sends them to the Account page anyway (ui.guard)."""
    if user is not None and user.account_page_only:
        return
    with st.sidebar:
        for entry in entries:
            st.page_link(entry.file, label=entry.title, icon=entry.icon)
        st.divider()


#: Seconds after a sign-in before the fallback run that opens a ``?next=`` page (see
#: :func:`continue_to_requested_page`); long enough for the cookie component to set its cookie.
FOLLOW_UP_SECONDS = 2.0
#: Set while the sign-in run renders the fallback fragment, so its first (inline) call waits.
_FOLLOW_UP_ARMED_KEY = "_brainloc_follow_up_armed"


def continue_to_requested_page(user: CurrentUser | None, *, signing_in: bool) -> None:
    """Open the page named by ``?next=`` once ``user`` is signed in (see the module docstring).

    Called by app.py after the navigation is built. While this run processes a submitted
    sign-in form (``signing_in``) it does not switch: switching pages now would drop the
    sign-in cookie before it reaches the browser. Setting that cookie usually reruns the app,
    and that run switches; because that rerun is the cookie component's and not guaranteed,
    the sign-in run also starts a timer (:func:`_follow_up_run`) that reruns the app after
    ``FOLLOW_UP_SECONDS`` if ``next`` is still waiting. Then ``next`` leaves the URL whether or
    not it is followed: a page outside the user's menu is ignored. The page's other query
    parameters (a case ``id``) are kept.
    """
    requested = st.query_params.get(NEXT_PARAM)
    if requested is None or user is None:
        return
    if signing_in:
        st.session_state[_FOLLOW_UP_ARMED_KEY] = True
        with st.sidebar:
            _follow_up_run()
        return
    target = next_page_for(user, requested)
    if target is None:
        del st.query_params[NEXT_PARAM]
        return
    # One step: the switch itself drops ``next``. Deleting it first could let a rerun that
    # arrives in between (the cookie component's) end this run with ``next`` gone and the
    # page never switched, which left the default page on screen.
    others = {key: value for key, value in st.query_params.to_dict().items() if key != NEXT_PARAM}
    st.switch_page(target.file, query_params=others)


@st.fragment(run_every=FOLLOW_UP_SECONDS)
def _follow_up_run() -> None:
    """Rerun the whole app once, ``FOLLOW_UP_SECONDS`` after a sign-in that has a ``next``.

    Renders nothing. Its first call is inline, in the sign-in run, and only disarms; a timed
    call reruns the app while ``next`` still waits (that run switches), and does nothing once
    the cookie's own rerun has switched already.
    """
    if st.session_state.pop(_FOLLOW_UP_ARMED_KEY, False):
        return
    if NEXT_PARAM in st.query_params:
        st.rerun(scope="app")
