"""The sign-in throttle by client address, through ``streamlit run`` and a real browser.

Streamlit's server (uvicorn) trusts ``X-Forwarded-For`` from a loopback peer, as from a
reverse proxy on the same host: a browser that sends one is seen at that address
(``st.context.ip_address``), one that does not is a loopback peer, which Streamlit reports as
no address. So one test shows that the sign-in page hands the address to the engine, that a
failure records it, that the address is refused at the limit, and that a browser at another
(here: no) address is not.
"""

from __future__ import annotations

from sqlmodel import Session

from brainloc.sign_in_throttle import MAX_ADDRESS_FAILURES, THROTTLED_REASON
from db.audit import Action, list_events, record_event
from db.engine import make_engine
from db.types import utc_now
from tests.e2e.browser import UI_TIMEOUT_MS, open_app, sign_in

from playwright.sync_api import expect  # isort: skip

ADMIN = ("chief", "chief-admin-password")
PROXIED_ADDRESS = "203.0.113.9"


def _failed_sign_ins(server):
    engine = make_engine(f"sqlite:///{server.data_dir / 'brainloc.db'}")
    try:
        with Session(engine) as session:
            return list_events(session, actions=[Action.LOGIN_FAILED])
    finally:
        engine.dispose()


def _seed_failures(server, count: int) -> None:
    """``count`` failed sign-ins from :data:`PROXIED_ADDRESS` just now, as the app records
    them (another app process on the same database, say)."""
    engine = make_engine(f"sqlite:///{server.data_dir / 'brainloc.db'}")
    try:
        with Session(engine) as session:
            for _ in range(count):
                record_event(
                    session, action=Action.LOGIN_FAILED, actor_id=None, at=utc_now(),
                    detail={"reason": "unknown username"}, client_address=PROXIED_ADDRESS,
                )  # fmt: skip
            session.commit()
    finally:
        engine.dispose()


def test_the_browsers_address_is_recorded_and_refused_at_the_limit(app_server, browser):
    server = app_server(admin=ADMIN)
    proxied = browser.new_context(extra_http_headers={"X-Forwarded-For": PROXIED_ADDRESS})
    direct = browser.new_context()
    try:
        page = proxied.new_page()
        open_app(page, server.url)
        sign_in(page, ADMIN[0], "not-the-password")
        (failure,) = _failed_sign_ins(server)
        assert failure.client_address == PROXIED_ADDRESS
        assert failure.detail == {"reason": "wrong password", "address": PROXIED_ADDRESS}

        _seed_failures(server, MAX_ADDRESS_FAILURES - 1)
        sign_in(page, *ADMIN)  # the right password, refused without a check
        expect(
            page.get_by_text("too many failed sign-ins came from this network address")
        ).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
        refusal = _failed_sign_ins(server)[0]
        assert refusal.detail["reason"] == THROTTLED_REASON
        assert refusal.detail["address"] == PROXIED_ADDRESS

        other = direct.new_page()
        open_app(other, server.url)
        sign_in(other, *ADMIN)
        expect(other.get_by_role("button", name="Sign out")).to_be_visible(timeout=UI_TIMEOUT_MS)
    finally:
        proxied.close()
        direct.close()
