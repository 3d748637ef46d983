"""The shipped nginx configuration (``deploy/nginx-brainloc.conf``) in front of a real server.

nginx (Debian's package; ``make test`` installs it) runs the very file a clinic installs, with
only its names, ports and certificate paths replaced, and a test certificate. Chromium then
signs in and analyses a slice over HTTPS: the websocket, the upload (with Streamlit's XSRF
cookie made Secure and SameSite=Strict) and the security headers must all work, and the
browser must report no content blocked by the Content-Security-Policy.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from brainloc.settings import COOKIE_NAME
from tests.e2e.browser import REPO, UI_TIMEOUT_MS, free_port, sign_in, wait_idle
from tests.e2e.test_workflow_browser import (
    ANALYSIS_TIMEOUT_MS,
    PASSWORD,
    _add_practitioners,
    _go,
    _models_dir,
    _tumor_slice,
)

from playwright.sync_api import expect  # isort: skip

CONFIG = REPO / "deploy" / "nginx-brainloc.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _render(server_port: int, http_port: int, https_port: int, tls: Path) -> str:
    """The shipped file with the test's names, ports and certificate (nothing else changed)."""
    text = CONFIG.read_text(encoding="utf-8")
    for placeholder, value in (
        ("brainloc.clinic.example", "localhost"),
        ("/etc/ssl/brainloc/fullchain.pem", str(tls / "cert.pem")),
        ("/etc/ssl/brainloc/privkey.pem", str(tls / "key.pem")),
        ("127.0.0.1:8501", f"127.0.0.1:{server_port}"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
    ):
        assert placeholder in text, placeholder
        text = text.replace(placeholder, value)
    return text


def _start_nginx(root: Path, site: str) -> subprocess.Popen:
    """nginx in the foreground, every file it writes under ``root``."""
    (root / "site.conf").write_text(site, encoding="utf-8")
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (root / "nginx.conf").write_text(
        f"daemon off;\npid {root / 'nginx.pid'};\nerror_log {root / 'error.log'};\n"
        f"events {{}}\nhttp {{\n    access_log {root / 'access.log'};\n{temp}\n"
        f"    include {root / 'site.conf'};\n}}\n",
        encoding="utf-8",
    )
    command = [
        NGINX,
        "-p",
        str(root),
        "-e",
        str(root / "error.log"),
        "-c",
        str(root / "nginx.conf"),
    ]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(url: str, context: ssl.SSLContext, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


@pytest.fixture
def proxied(app_server, tmp_path):
    """(https URL, http port) of nginx in front of a BrainLoc server with one practitioner."""
    assert Path(NGINX).exists(), "nginx is missing: make test installs it with apt-get"
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    _add_practitioners(f"sqlite:///{tmp_path / 'data' / 'brainloc.db'}", "alice")
    server = app_server(BRAINLOC_MODELS_DIR=str(_models_dir()))
    http_port, https_port = free_port(), free_port()
    root = tmp_path / "nginx"
    root.mkdir()
    nginx = _start_nginx(
        root, _render(int(server.url.rsplit(":", 1)[1]), http_port, https_port, tls)
    )
    url = f"https://localhost:{https_port}"
    try:
        _wait_for(f"{url}/_stcore/health", ssl.create_default_context(cafile=tls / "cert.pem"))
        yield url, http_port, tls
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def test_the_shipped_nginx_configuration_serves_the_app_over_https(proxied, browser, tmp_path):
    url, http_port, tls = proxied
    # Plain HTTP only redirects.
    plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    plain.request("GET", "/history", headers={"Host": "localhost"})
    redirect = plain.getresponse()
    assert (redirect.status, redirect.getheader("Location")) == (301, "https://localhost/history")
    # The headers a hospital's security review asks for.
    with urllib.request.urlopen(
        url, context=ssl.create_default_context(cafile=tls / "cert.pem"), timeout=10
    ) as response:
        headers = response.headers
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    # Connections (the websocket included) only to this server, not to any wss: host.
    assert "connect-src 'self';" in headers["Content-Security-Policy"]

    context = browser.new_context(
        ignore_https_errors=True, viewport={"width": 1400, "height": 1000}
    )
    page = context.new_page()
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(message.text)
            if any(
                word in message.text for word in ("Refused", "Content Security Policy", "WebSocket")
            )
            else None
        ),
    )
    page.goto(url)
    sign_in(page, "alice", PASSWORD)
    expect(page.get_by_text("having trouble loading")).to_have_count(0)
    _go(page, "Analyze")
    page.locator("input[type='file']").set_input_files(str(_tumor_slice(tmp_path)))
    wait_idle(page)
    page.get_by_label("Case reference").fill("PROXY-1")
    page.get_by_role("button", name="Analyze", exact=True).click()
    expect(page.get_by_text("Tumor suspected")).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)
    expect(page.locator("img[src*='media']")).to_have_count(2)
    _go(page, "Model card")
    _go(page, "History")
    expect(page.get_by_text("1 analysis(es) match.")).to_be_visible(timeout=UI_TIMEOUT_MS)
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    xsrf = cookies["_streamlit_xsrf"]
    assert xsrf["secure"] and xsrf["sameSite"] == "Strict", xsrf
    # The "remember me" cookie, set by the page's script, is Secure too over HTTPS.
    remembered = cookies[COOKIE_NAME]
    assert remembered["secure"] and remembered["sameSite"] == "Strict", remembered
    assert not blocked, blocked
    context.close()
