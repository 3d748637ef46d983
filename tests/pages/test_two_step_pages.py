"""Two-step sign-in through the real pages (AppTest): set-up on the Account page, the code
form at sign-in, the clinic's requirement, and the administrator's reset."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from streamlit.testing.v1 import AppTest

from brainloc import two_step
from brainloc.settings import get_settings
from db import audit
from db import users as user_store
from db.engine import session_scope
from db.types import utc_now
from tests.conftest import TEST_PASSWORD
from ui.guard import TWO_STEP_NEEDED
from ui.state import USER_ID_KEY


def _titles(at: AppTest) -> list[str]:
    return [title.value for title in at.title]


def _signed_in(at: AppTest) -> int | None:
    return at.session_state[USER_ID_KEY] if USER_ID_KEY in at.session_state else None  # noqa: SIM401


def _enable_earlier(user) -> tuple[str, list[str]]:
    """Two-step sign-in turned on with a code of two minutes ago, so the current code has
    not been used yet (a code is accepted once)."""
    enrolment = two_step.new_enrolment(username=user.username)
    earlier = utc_now() - timedelta(minutes=2)
    with session_scope() as session:
        codes = two_step.enable(
            session,
            user_id=user.id,
            enrolment=enrolment,
            code=pyotp.TOTP(enrolment.secret).at(earlier),
            clock=lambda: earlier,
        )
    return enrolment.secret, codes


def _password_step(at: AppTest, username: str = "alice") -> AppTest:
    """Submit the sign-in form with the right password."""
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(TEST_PASSWORD)
    return at.button(key="login_submit").click().run()


def _stored(user_id: int):
    with session_scope() as session:
        return user_store.get_user(session, user_id=user_id)


def test_setting_it_up_on_the_account_page(open_app, make_account):
    alice = make_account("alice")
    at = open_app(alice).switch_page("pages/account.py").run()
    assert _titles(at) == ["Account"]
    at.button(key="two_step_start").click().run()
    assert not at.exception
    assert len(at.get("image")) == 1  # the QR code
    (key,) = at.code
    secret = key.value.replace(" ", "")
    # A wrong code: an error, and nothing saved.
    at.text_input(key="two_step_setup_code").input("000000")
    at.button(key="two_step_confirm").click().run()
    assert "not the one your authenticator app shows" in at.error[0].value
    assert _stored(alice.id).totp_secret is None
    # The app's code turns it on and shows ten recovery codes once.
    at.text_input(key="two_step_setup_code").input(pyotp.TOTP(secret).now())
    at.button(key="two_step_confirm").click().run()
    assert not at.exception and not at.error
    assert _stored(alice.id).totp_secret == secret
    (codes,) = at.code
    recovery = codes.value.splitlines()
    assert len(recovery) == 10
    assert any("Two-step sign-in is **on**" in s.value for s in at.success)
    with session_scope() as session:
        assert audit.list_events(session, actions=[audit.Action.TWO_STEP_ENABLED])
    at.button(key="two_step_codes_saved").click().run()
    assert not at.code
    assert any("Unused recovery codes: **10**" in s.value for s in at.success)


def test_sign_in_asks_for_the_code_after_the_password(open_app, make_account):
    alice = make_account("alice")
    secret, recovery = _enable_earlier(alice)
    at = open_app()
    _password_step(at)
    assert not at.exception
    # The password was right, but nobody is signed in yet: the code form is shown.
    assert _signed_in(at) is None
    assert [w.key for w in at.text_input] == ["two_step_code"]
    at.text_input(key="two_step_code").input("123456")
    at.button(key="two_step_submit").click().run()
    assert "That code did not work" in at.error[0].value
    assert _signed_in(at) is None
    at.text_input(key="two_step_code").input(pyotp.TOTP(secret).now())
    at.button(key="two_step_submit").click().run()
    assert not at.exception
    assert at.session_state[USER_ID_KEY] == alice.id
    assert _titles(at) == ["Analyze"]
    with session_scope() as session:
        (login,) = audit.list_events(session, actor_id=alice.id, actions=[audit.Action.LOGIN])
    assert login.detail == {"method": "password+code"}


def test_back_to_the_password_and_a_recovery_code(open_app, make_account):
    alice = make_account("alice")
    _, recovery = _enable_earlier(alice)
    at = open_app()
    _password_step(at)
    at.button(key="two_step_cancel").click().run()
    assert [w.key for w in at.text_input] == ["login_username", "login_password"]
    assert at.text_input(key="login_username").value == "alice"  # kept for the next try
    _password_step(at)
    at.text_input(key="two_step_code").input(recovery[0])
    at.button(key="two_step_submit").click().run()
    assert at.session_state[USER_ID_KEY] == alice.id
    with session_scope() as session:
        assert two_step.status(session, user_id=alice.id).recovery_codes_left == 9


def test_a_required_two_step_sign_in_opens_only_the_account_page(
    open_app, make_account, monkeypatch
):
    monkeypatch.setenv("BRAINLOC_REQUIRE_TWO_STEP", "everyone")
    get_settings.cache_clear()
    alice = make_account("alice")
    at = open_app(alice)
    assert _titles(at) == ["Account"]
    assert any("requires two-step sign-in" in i.value for i in at.info)
    other = open_app(alice).switch_page("pages/history.py").run()
    assert _titles(other) == [] and [w.value for w in other.warning] == [TWO_STEP_NEEDED]
    _enable_earlier(alice)
    at.switch_page("pages/history.py").run()
    assert _titles(at) == ["History"]
    # Required: the Account page offers no way to turn it off.
    at.switch_page("pages/account.py").run()
    assert not any(b.key == "two_step_off" for b in at.button)


def test_turning_it_off_on_the_account_page(open_app, make_account):
    alice = make_account("alice")
    secret, _ = _enable_earlier(alice)
    at = open_app(alice).switch_page("pages/account.py").run()
    at.text_input(key="two_step_off_password").input(TEST_PASSWORD)
    at.text_input(key="two_step_off_code").input("999999")
    at.button(key="two_step_off").click().run()
    assert "not the one your authenticator app shows" in at.error[0].value
    assert _stored(alice.id).totp_secret == secret
    at.text_input(key="two_step_off_password").input(TEST_PASSWORD)
    at.text_input(key="two_step_off_code").input(pyotp.TOTP(secret).now())
    at.button(key="two_step_off").click().run()
    assert not at.exception
    assert "Two-step sign-in is off" in at.success[-1].value
    assert _stored(alice.id).totp_secret is None
    assert at.button(key="two_step_start")


@pytest.mark.parametrize("confirm", [False, True])
def test_admin_turns_off_a_lost_phones_two_step_sign_in(open_app, make_account, confirm):
    admin = make_account("root", role="admin")
    bob = make_account("bob")
    _enable_earlier(bob)
    at = open_app(admin)
    assert at.selectbox(key="admin_user").value == bob.id
    assert at.button(key="admin_reset_two_step").disabled
    if not confirm:
        return
    at.checkbox(key=f"admin_reset_confirm_{bob.id}").check().run()
    at.button(key="admin_reset_two_step").click().run()
    assert not at.exception
    assert "bob: two-step sign-in is off" in at.success[0].value
    assert _stored(bob.id).totp_secret is None
    # The button is gone with it, and the confirmation is spent.
    assert not any(b.key == "admin_reset_two_step" for b in at.button)
    assert not at.checkbox(key=f"admin_reset_confirm_{bob.id}").value


def _on_sign_in_page(at: AppTest) -> bool:
    return [w.key for w in at.text_input] == ["login_username", "login_password"]


def test_the_next_user_of_the_tab_gets_nothing_of_the_last_one(open_app, make_account):
    # A shared ward workstation: alice turns two-step sign-in on and signs out before she
    # has confirmed saving her recovery codes; bob signs in in the same browser tab.
    alice = make_account("alice")
    bob = make_account("bob")
    at = open_app(alice).switch_page("pages/account.py").run()
    at.button(key="two_step_start").click().run()
    secret = at.code[0].value.replace(" ", "")
    at.text_input(key="two_step_setup_code").input(pyotp.TOTP(secret).now())
    at.button(key="two_step_confirm").click().run()
    (shown,) = at.code
    recovery = shown.value.splitlines()
    assert len(recovery) == 10
    at.switch_page("app.py").run()  # the page alone has no sidebar
    at.button(key="logout_button").click().run()
    assert not at.exception and _on_sign_in_page(at)
    # Only the sign-in machinery's own keys are left in the session.
    left = set(at.session_state.keys())
    assert not {key for key in left if "two_step" in key or key.startswith("_password")}
    _password_step(at, "bob")
    assert _signed_in(at) == bob.id
    at.switch_page("pages/account.py").run()
    assert not at.exception and _titles(at) == ["Account"]
    assert not any(code in block.value for block in at.code for code in recovery)
    assert at.button(key="two_step_start")  # bob's own page: two-step sign-in is off


@pytest.mark.parametrize("how", ["password change", "end all other sessions", "admin reset"])
def test_ending_sign_ins_signs_out_other_open_sessions(open_app, make_account, how):
    admin = make_account("root", role="admin")
    alice = make_account("alice")
    here = open_app(alice).switch_page("pages/account.py").run()
    elsewhere = open_app(alice).switch_page("pages/history.py").run()
    assert _titles(elsewhere) == ["History"]
    if how == "password change":
        here.text_input(key="pw_current").input(TEST_PASSWORD)
        here.text_input(key="pw_new").input("alice-chose-another")
        here.text_input(key="pw_repeat").input("alice-chose-another")
        here.button(key="pw_submit").click().run()
    elif how == "end all other sessions":
        here.button(key="security_end_other_sessions").click().run()
        assert "Every other sign-in of this account has ended" in here.success[-1].value
    else:
        with session_scope() as session:
            from brainloc.account_admin import reset_password

            reset_password(session, admin_id=admin.id, user_id=alice.id)
    assert not here.exception
    # The other browser's next interaction shows the sign-in page, and says why.
    elsewhere.run()
    assert _signed_in(elsewhere) is None and _on_sign_in_page(elsewhere)
    assert any("You were signed out" in i.value for i in elsewhere.info)
    # The session that asked stays signed in (not after an administrator's reset).
    here.run()
    if how == "admin reset":
        assert _signed_in(here) is None and _on_sign_in_page(here)
    else:
        assert _signed_in(here) == alice.id and _titles(here) == ["Account"]
        assert any(
            event.description in ("Password changed", "Ended all other sessions")
            for event in _security(alice.id)
        )


def _security(user_id: int):
    from brainloc.account_security import security_events

    with session_scope() as session:
        return security_events(session, user_id=user_id)


@pytest.mark.parametrize("page", ["case", "admin"])
def test_a_file_built_on_request_needs_a_session_still_signed_in(
    open_app, make_account, monkeypatch, page
):
    """The case as NIfTI and the audit CSV are built by a Prepare button. Its callback runs
    before the page's own check, so it checks the session itself: a tab left open after the
    account's sessions were ended elsewhere gets no file, and is signed out."""
    from brainloc import audit_log, case_export
    from brainloc.account_security import end_other_sessions
    from tests.db.clinical_factory import make_analysis

    # The real builders, counted (the pages import them at each run).
    module, name = (case_export, "nifti_zip") if page == "case" else (audit_log, "audit_csv")
    real, builds = getattr(module, name), []

    def counted(*args, **kwargs):
        builds.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)

    alice = make_account("alice")
    root = make_account("root", role="admin")
    if page == "case":
        with session_scope() as session:
            analysis = make_analysis(session, alice.id, reference="LATER", probabilities=(0.9,))
        owner, key = alice, "case_nifti"

        def open_page():
            at = open_app(alice)
            at.query_params["id"] = str(analysis.id)
            return at.switch_page("pages/case.py").run()
    else:
        with session_scope() as session:  # an event to export
            end_other_sessions(session, user_id=alice.id)
        owner, key = root, "admin_audit_csv"

        def open_page():
            return open_app(root)

    state = f"prepared_download_{key}"
    # Signed in: the press builds the file and the page then offers it for download.
    at = open_page()
    assert not at.exception
    at.button(key=f"{key}_prepare").click().run()
    assert not at.exception
    prepared = at.session_state[state]
    assert len(prepared.data) > 100 and len(builds) == 1
    assert prepared.file_name.endswith(".zip" if page == "case" else ".csv")
    assert f"{key}_prepare" not in [button.key for button in at.button]
    # Preparing is the export (the file's address is in the browser from now on); pressing
    # the download button then records nothing more.
    action = audit.Action.DOWNLOAD if page == "case" else audit.Action.EXPORT

    def recorded() -> list[dict]:
        with session_scope() as session:
            events = audit.list_events(session, actor_id=owner.id, actions=[action])
        return [event.detail for event in events]

    what = {"what": "nifti_zip"} if page == "case" else {"what": "audit_csv", "rows": 1}
    assert recorded() == [what]
    (download,) = (b for b in at.get("download_button") if b.key == f"{key}_download")
    download.click().run()
    assert not at.exception
    assert recorded() == [what]
    # Another tab, before anything is prepared; then the account's sessions are ended (a
    # password change in another browser): its press builds nothing and it is signed out.
    other = open_page()
    with session_scope() as session:
        end_other_sessions(session, user_id=owner.id)
    other.button(key=f"{key}_prepare").click().run()
    assert not other.exception
    assert len(builds) == 1 and state not in other.session_state
    assert _signed_in(other) is None


def test_a_prepared_file_is_kept_for_its_case_only(open_app, make_account):
    """Opening another case drops the first case's prepared NIfTI (it would only hold
    memory), and shows that case's own Prepare button."""
    from tests.db.clinical_factory import make_analysis

    alice = make_account("alice")
    with session_scope() as session:
        first = make_analysis(session, alice.id, reference="FIRST", probabilities=(0.9,))
        second = make_analysis(session, alice.id, reference="SECOND", probabilities=(0.1,))
    at = open_app(alice)
    at.query_params["id"] = str(first.id)
    at.switch_page("pages/case.py").run()
    at.button(key="case_nifti_prepare").click().run()
    assert at.session_state["prepared_download_case_nifti"].fingerprint == first.id
    at.query_params["id"] = str(second.id)
    at.run()
    assert not at.exception
    assert "prepared_download_case_nifti" not in at.session_state
    assert "case_nifti_prepare" in [button.key for button in at.button]


def test_the_timer_reruns_an_untouched_session_that_was_ended_or_idle():
    from ui.idle import timer_should_rerun

    def rerun(limit, idle_for, still):
        return timer_should_rerun(
            limit=limit, last_activity=1000.0, now=1000.0 + idle_for, still_signed_in=still
        )

    assert not rerun(1800, 60, True)  # active and still signed in: nothing happens
    assert rerun(1800, 60, False)  # ended elsewhere: the sign-in page, without a click
    assert rerun(1800, 1801, True)  # idle past the limit
    assert rerun(None, 60, False) and not rerun(None, 10**6, True)  # idle sign-out off
