"""The throttles by client address (sign-in and registration), through ``streamlit run`` and
a real browser.

Streamlit's server (uvicorn) trusts ``X-Forwarded-For`` from a loopback peer, as from a
reverse proxy on the same host: a browser that sends one is seen at that address
(``st.context.ip_address``), one that does not is a loopback peer, which Streamlit reports as
no address. So one test shows that the sign-in page hands the address to the engine, that a
failure records it, that the address is refused at the limit, and that a browser at another
(here: no) address is not; another shows the same of the Register page (whose address is
read in a form's callback).
"""

from __future__ import annotations

from sqlmodel import Session

from brainloc.registration_throttle import MAX_ADDRESS_REFUSALS, TOO_MANY_REFUSALS
from brainloc.sign_in_throttle import MAX_ADDRESS_FAILURES, THROTTLED_REASON
from db.audit import Action, list_events, record_event
from db.engine import make_engine
from db.types import utc_now
from db.users import count_users
from tests.e2e.browser import UI_TIMEOUT_MS, open_app, sign_in, wait_idle

from playwright.sync_api import expect  # isort: skip

ADMIN = ("chief", "chief-admin-password")
PROXIED_ADDRESS = "203.0.113.9"


def _in_database(server, read):
    """``read(session)`` on the server's database."""
    engine = make_engine(f"sqlite:///{server.data_dir / 'brainloc.db'}")
    try:
        with Session(engine) as session:
            return read(session)
    finally:
        engine.dispose()


def _failed_sign_ins(server):
    return _in_database(server, lambda session: list_events(session, actions=[Action.LOGIN_FAILED]))


def _seed_failures(server, count: int, *, action: str = Action.LOGIN_FAILED) -> None:
    """``count`` failed sign-ins (or other ``action`` events) from :data:`PROXIED_ADDRESS`
    just now, as the app records them (another app process on the same database, say)."""

    def seed(session):
        for _ in range(count):
            record_event(
                session, action=action, actor_id=None, at=utc_now(),
                detail={"reason": "unknown username"}, client_address=PROXIED_ADDRESS,
            )  # fmt: skip
        session.commit()

    _in_database(server, seed)


def _register(page, username: str) -> None:
    """Fill in and submit the Register page's form for a new colleague ``username``."""
    wait_idle(page)
    fields = {
        "Full name": f"Dr {username.title()}",
        "Email": f"{username}@clinic.example",
        "Username": username,
        "Password": "mary-ward-secret",
        "Repeat password": "mary-ward-secret",
        "Licence / registration number": "IMC 445566",
        "Institution": "Galway University Hospital",
    }
    for label, value in fields.items():
        page.get_by_role("textbox", name=label, exact=True).fill(value)
    page.get_by_role("combobox", name="Practitioner category").click()
    page.get_by_role("option", name="Neuroradiologist").click()
    wait_idle(page)
    page.get_by_role("button", name="Register").click()


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


def test_the_register_page_hands_the_browsers_address_to_its_throttle(app_server, browser):
    server = app_server()
    proxied = browser.new_context(extra_http_headers={"X-Forwarded-For": PROXIED_ADDRESS})
    try:
        page = proxied.new_page()
        open_app(page, f"{server.url}/register")
        _register(page, "mward")
        expect(page.get_by_text("pending approval by an administrator")).to_be_visible(
            timeout=UI_TIMEOUT_MS
        )
        (registered,) = _in_database(
            server, lambda session: list_events(session, actions=[Action.REGISTER])
        )
        assert registered.client_address == PROXIED_ADDRESS

        _seed_failures(server, MAX_ADDRESS_REFUSALS, action=Action.REGISTER_REFUSED)
        _register(page, "jmurphy")  # valid and new, refused without a check
        expect(
            page.get_by_text("too many registrations from this network address were refused")
        ).to_be_visible(timeout=UI_TIMEOUT_MS)
        assert _in_database(server, count_users) == 1
        (refusal, *_) = _in_database(
            server, lambda session: list_events(session, actions=[Action.REGISTER_REFUSED])
        )
        assert refusal.detail == {"reason": TOO_MANY_REFUSALS, "address": PROXIED_ADDRESS}
    finally:
        proxied.close()
