"""Which pages each signed-in user gets, built into ``st.navigation`` by app.py.

Signed out: sign in, register. Pending, rejected or disabled: the status page only.
Approved practitioner: the clinical pages and the account page. Administrator: accounts
administration and the account page. Anyone whose password was generated for them (the demo
account) gets no menu until they choose their own: every page sends them to the account page
(ui.guard). Clinical pages whose file has not landed yet are left out, so the app runs while
features are added. Each page still guards itself.
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


def build_navigation(user: CurrentUser | None) -> st.navigation:
    """``st.navigation`` over the pages ``user`` may see (the first is the default).

    For a signed-out visitor every other page's URL is a hidden alias of the sign-in page:
    a bookmarked ``/history`` shows the sign-in (not a "page not found" box) and, once
    signed in, the same URL opens the page itself. While a user must change a generated
    password the menu is hidden; the pages' URLs still resolve, and each page's guard sends
    the user to the Account page.
    """
    entries = entries_for(user)
    pages = [
        st.Page(
            entry.file,
            title=entry.title,
            icon=entry.icon,
            url_path=entry.url_path,
            default=index == 0,
        )
        for index, entry in enumerate(entries)
    ]
    if user is None:
        shown = {entry.url_path for entry in entries}
        pages += [
            st.Page(LOGIN.file, title=LOGIN.title, url_path=entry.url_path, visibility="hidden")
            for entry in (*PRACTITIONER_PAGES, ADMIN, ACCOUNT, STATUS)
            if entry.url_path not in shown
        ]
    hidden = user is not None and user.must_change_password
    return st.navigation(pages, position="hidden" if hidden else "sidebar")
