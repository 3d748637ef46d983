"""The server, started as ``make run`` and the container start it (no fixed listening address),
contacts nothing outside this machine.

Streamlit's start-up banner looks up the machine's public address at an Amazon service when
it runs headless on all interfaces, unless ``browser.serverAddress`` is set
(``.streamlit/config.toml``). The test points the server's HTTP proxy at a local listener
(requests, which that lookup uses, honours ``HTTP_PROXY``/``HTTPS_PROXY``), so any such
request lands here instead of on the internet, and counts the connections that arrive.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request

from tests.e2e.browser import REPO, free_port, server_env


def _listener() -> tuple[int, list[bytes], threading.Event]:
    """A TCP listener on a free local port that records what each connection sends first."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        with sock:
            while not stop.is_set():
                try:
                    connection, _ = sock.accept()
                except TimeoutError:
                    continue
                with connection:
                    connection.settimeout(2)
                    try:
                        received.append(connection.recv(200))
                    except OSError:
                        received.append(b"")

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], received, stop


def test_starting_the_server_contacts_nothing_outside(tmp_path):
    proxy_port, received, stop = _listener()
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = server_env(
        tmp_path / "data",
        HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy,
        NO_PROXY="", no_proxy="",
    )  # fmt: skip
    port = free_port()
    log_path = tmp_path / "streamlit.log"
    # As `make run` starts it: the shipped config, no --server.address.
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "You can now view" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
            assert r.status == 200
        time.sleep(2)  # anything started with the banner has had time to connect
        banner = log_path.read_text(errors="replace")
    finally:
        process.terminate()
        process.wait(timeout=20)
        stop.set()
    assert received == [], (received, banner)
    assert f"URL: http://localhost:{port}" in banner, banner
