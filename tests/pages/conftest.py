"""AppTest helpers for page tests: open the real app.py with a user already signed in.

Usage in a page test::

    def test_something(open_app, make_account):
        user = make_account("alice")                 # approved practitioner
        at = open_app(user)                          # app.py ran once, alice signed in
        at.switch_page("pages/history.py").run()     # ValueError if not in alice's menu

The user is injected the way the app itself records a sign-in: ``ui.state.USER_ID_KEY``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from brainloc.log_format import APP_LOGGERS, HANDLER_NAME
from db.models import User
from db.types import utc_now
from ui.state import SIGNED_IN_AT_KEY, USER_ID_KEY

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app.py"


@pytest.fixture(autouse=True)
def _app_log_handler_removed() -> Iterator[None]:
    """app.py installs the server's log handler on the root logger for the whole process
    (brainloc.log_format.configure_logging); each page test takes it away again, so the tests
    after it log as they did before (with BrainLoc's loggers' levels as they were)."""
    levels = {name: logging.getLogger(name).level for name in APP_LOGGERS}
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def open_app(app_env) -> Callable[..., AppTest]:
    """``open_app(user=None, timeout=60)`` -> an AppTest of app.py after its first run."""

    def factory(user: User | None = None, *, timeout: float = 60) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=timeout)
        if user is not None:
            # As a sign-in in this very moment records it (ui.auth).
            at.session_state[USER_ID_KEY] = user.id
            at.session_state[SIGNED_IN_AT_KEY] = utc_now()
        return at.run()

    return factory
