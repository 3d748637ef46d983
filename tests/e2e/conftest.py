"""Fixtures for real-browser tests (see tests/e2e/browser.py for the helpers).

* ``browser``: one headless Debian chromium for the whole run (skips if it is missing).
* ``context``: a fresh browser context (own cookies) per test; call it again for a second
  person: ``other = browser.new_context()``.
* ``app_server``: a factory ``app_server(admin=("root", "pw"))`` that starts a *fresh*
  ``streamlit run`` on a free port with its own temporary data directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, Server, create_admin, start_server


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (make test installs it with apt-get)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture
def app_server(tmp_path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def factory(*, admin: tuple[str, str] | None = None, name: str = "data", **env) -> Server:
        data_dir = tmp_path / name
        if admin is not None:
            create_admin(data_dir, *admin)
        server = start_server(data_dir, **env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
