"""Reusable pieces for real-browser tests: a ``streamlit run`` server on a free localhost
port with its own data directory, Debian's chromium driven by Playwright, and helpers.

Never ``playwright install``: the tests use /usr/bin/chromium (``make test`` installs it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from brainloc.settings import COOKIE_NAME

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long to wait for Streamlit to render something (a loaded CI machine is slow).
UI_TIMEOUT_MS = 30_000


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for the app and CLI: this data dir, nothing from the caller's app."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINLOC_", "DATABASE_"))}
    env |= {"BRAINLOC_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env |= extra
    return env


def create_admin(data_dir: Path, username: str, password: str) -> None:
    """Create an administrator with the real CLI."""
    subprocess.run(
        [sys.executable, "-m", "brainloc", "create-admin", "--username", username,
         "--email", f"{username}@clinic.example"],
        cwd=REPO, env=server_env(data_dir, BRAINLOC_ADMIN_PASSWORD=password),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@dataclass
class Server:
    """A running ``streamlit run app.py``."""

    url: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        """What the server printed so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace")


def start_server(data_dir: Path, *, timeout: float = 90, **extra_env: str) -> Server:
    """Start the app on a free port and wait until its health endpoint answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / f"streamlit-{port}.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=server_env(data_dir, **extra_env), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"streamlit did not become healthy in {timeout} s:\n{server.log()}")


_SCRIPT_STATE_JS = (
    "() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state')"
)
#: A page is settled when no script run started for this long. Streamlit reruns the script
#: once or twice after a page load (the sign-in cookie component reports back), and a form
#: submitted during such a rerun can be dropped by the frontend.
SETTLE_SECONDS = 2.0


def wait_idle(page: Page, *, settle: float = SETTLE_SECONDS) -> None:
    """Wait until the app has finished running and stayed idle for ``settle`` seconds."""
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000 * 2
    idle_since: float | None = None
    while time.monotonic() < deadline:
        if page.evaluate(_SCRIPT_STATE_JS) == "notRunning":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= settle:
                return
        else:
            idle_since = None
        page.wait_for_timeout(100)
    raise TimeoutError("the Streamlit app did not settle")


def open_app(page: Page, url: str) -> None:
    """Navigate to ``url`` and wait until the first script run is over."""
    page.goto(url)
    wait_idle(page)


def expect_sign_in_page(page: Page) -> None:
    """The sign-in form is shown and nothing of any signed-in page is."""
    wait_idle(page)
    expect(page.get_by_role("textbox", name="Username")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    for heading in ("Administration", "Account status", "Change password"):
        expect(page.get_by_text(heading, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def sign_in(page: Page, username: str, password: str) -> None:
    """Fill and submit the sign-in form on the current page."""
    wait_idle(page)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    # Either outcome proves the server took the form: signed in, or the failure message with
    # the password field emptied.
    signed_in = page.get_by_role("button", name="Sign out")
    refused = page.get_by_text("Sign-in failed")
    # .first: while a run replaces a page, its old elements linger beside the new ones.
    expect(signed_in.or_(refused).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    if not signed_in.count():
        wait_idle(page)
        expect(page.get_by_role("textbox", name="Password")).to_have_value("")


def sign_out(page: Page) -> None:
    """Press the sidebar's sign-out button and wait for the sign-in form."""
    wait_idle(page)
    button = page.get_by_role("button", name="Sign out")
    button.click()
    expect(button).to_have_count(0, timeout=UI_TIMEOUT_MS)
    wait_idle(page)  # the previous page's elements linger until the run is over
    expect(page.get_by_role("textbox", name="Username")).to_be_visible(timeout=UI_TIMEOUT_MS)


def wait_for_sign_in_cookie(context: BrowserContext, timeout_s: float = 30) -> None:
    """The "remember me" cookie is written by a browser component a moment after sign-in;
    a fresh page load (a reload, a typed URL) is signed in only once it is there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(cookie["name"] == COOKIE_NAME for cookie in context.cookies()):
            return
        time.sleep(0.2)
    raise AssertionError("the sign-in cookie was never set")


def record_requests(context: BrowserContext) -> list[str]:
    """Every URL the pages of ``context`` request from now on (the list fills as they run)."""
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    return requested


def outside_requests(requested: list[str], server: Server) -> set[str]:
    """The requests that left ``server`` (anything but its own URLs, data: and blob:)."""
    return {url for url in requested if not url.startswith((f"{server.url}/", "data:", "blob:"))}
