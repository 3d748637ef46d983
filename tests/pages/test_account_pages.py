"""Registration, administration and account pages driven through AppTest widgets."""

from __future__ import annotations

import ui.auth
from brainloc.accounts import verify_password
from brainloc.registration_throttle import MAX_ADDRESS_REFUSALS
from db import audit, clinical
from db import users as user_store
from db.engine import session_scope
from tests.conftest import TEST_PASSWORD
from tests.db.clinical_factory import make_analysis

CLINIC = "198.51.100.20"
REGISTRATION = {
    "reg_full_name": "Dr Grace Hopper",
    "reg_email": "grace@navy.example",
    "reg_username": "ghopper",
    "reg_password": "compilers-are-fun",
    "reg_password_repeat": "compilers-are-fun",
    "reg_licence": "GMC 7654321",
    "reg_institution": "Naval Medical Center",
}


def _register_page(open_app):
    at = open_app()
    return at.switch_page("pages/register.py").run()


def _fill(at, values, category="neurosurgeon"):
    for key, value in values.items():
        at.text_input(key=key).input(value)
    if category:
        at.selectbox(key="reg_category").set_value(category)
    at.button(key="reg_submit").click()
    return at.run()


def test_registration_creates_a_pending_account(open_app):
    at = _fill(_register_page(open_app), REGISTRATION)
    assert not at.exception
    assert "pending approval" in at.success[0].value
    assert at.text_input(key="reg_password").value == ""
    with session_scope() as session:
        user = user_store.get_user_by_username(session, username="ghopper")
        category = user_store.get_category(session, category_id=user.category_id)
    assert (user.status, user.role, category.code) == ("pending", "practitioner", "neurosurgeon")
    assert verify_password("compilers-are-fun", user.password_hash)


def test_registration_errors_are_shown_per_field_and_nothing_is_saved(open_app):
    bad = REGISTRATION | {"reg_email": "grace-at-navy", "reg_password_repeat": "other-password"}
    at = _fill(_register_page(open_app), bad, category=None)
    messages = " ".join(e.value for e in at.error)
    assert "valid email" in messages
    assert "do not match" in messages
    assert "Choose your practitioner category" in messages
    assert not at.success
    assert at.text_input(key="reg_full_name").value == "Dr Grace Hopper"  # kept for fixing
    with session_scope() as session:
        assert user_store.count_users(session) == 0


def test_registration_passes_the_browsers_address_and_shows_the_throttles_refusal(
    open_app, monkeypatch
):
    """AppTest has no network address, so the page's source of one is replaced."""
    monkeypatch.setattr(ui.auth, "client_address", lambda: CLINIC)
    at = _fill(_register_page(open_app), REGISTRATION)
    assert "pending approval" in at.success[0].value
    with session_scope() as session:
        (registered,) = audit.list_events(session, actions=[audit.Action.REGISTER])
    assert registered.client_address == CLINIC
    with session_scope() as session:
        for _ in range(MAX_ADDRESS_REFUSALS):
            audit.record_event(
                session, action=audit.Action.REGISTER_REFUSED, actor_id=None,
                detail={"reason": "username taken"}, client_address=CLINIC,
            )  # fmt: skip
    at = _fill(at, REGISTRATION | {"reg_username": "gh2", "reg_email": "gh2@navy.example"})
    assert not at.exception and not at.success
    (error,) = at.error
    assert error.value.startswith("Registration refused: too many registrations")
    assert "Try again in 15 minutes." in error.value
    assert "Please correct" not in error.value
    assert at.text_input(key="reg_full_name").value == "Dr Grace Hopper"  # kept for later
    with session_scope() as session:
        assert user_store.count_users(session) == 1


def test_admin_approves_a_pending_account(open_app, make_account):
    admin = make_account("root", role="admin")
    pending = make_account("bob", status="pending")
    at = open_app(admin)
    assert at.selectbox(key="admin_user").value == pending.id
    assert [b.key for b in at.button if b.key.startswith("admin_decide")] == [
        "admin_decide_approve",
        "admin_decide_reject",
        "admin_decide_disable",
    ]
    at.button(key="admin_decide_approve").click()
    at.run()
    assert not at.exception
    assert "approve done" in at.success[0].value
    # The status is shown beside the picker, not in its option labels, which the browser
    # keeps as they were when chosen (it went on showing "(pending)" after the approval).
    assert "Status: **approved**" in [m.value for m in at.markdown]
    assert "pending" not in at.selectbox(key="admin_user").format_func(pending.id)
    with session_scope() as session:
        assert user_store.get_user(session, user_id=pending.id).status == "approved"
        change = audit.list_events(session, actions=[audit.Action.STATUS_CHANGE])[0]
    assert (change.actor_id, change.target_id) == (admin.id, pending.id)
    # The audit log on the page lists the decision.
    assert "status_change" in at.dataframe[1].value["Action"].tolist()


def test_admin_resets_a_forgotten_password_after_confirming_who_asks(open_app, make_account):
    admin = make_account("root", role="admin")
    user = make_account("bob")
    at = open_app(admin)
    assert at.selectbox(key="admin_user").value == user.id
    # Nothing happens before the administrator confirms who is asking.
    assert at.button(key="admin_reset_password").disabled
    at.checkbox(key=f"admin_reset_confirm_{user.id}").check().run()
    at.button(key="admin_reset_password").click().run()
    assert not at.exception
    assert "bob: password reset" in at.success[0].value
    (shown,) = at.code
    password = shown.value
    with session_scope() as session:
        stored = user_store.get_user(session, user_id=user.id)
        (event,) = audit.list_events(session, actions=[audit.Action.PASSWORD_RESET])
    assert verify_password(password, stored.password_hash)
    assert not verify_password(TEST_PASSWORD, stored.password_hash)
    assert stored.must_change_password
    assert (event.actor_id, event.target_id) == (admin.id, user.id)
    # The confirmation is spent, and hiding the password removes it from the page.
    assert not at.checkbox(key=f"admin_reset_confirm_{user.id}").value
    assert at.button(key="admin_reset_password").disabled
    at.button(key="admin_reset_hide").click().run()
    assert not at.code and not at.success
    # Bob signs in with it and gets only the Account page until he chooses his own.
    bob = open_app(stored)
    assert "generated for you" in bob.info[0].value
    change_password(bob, password, "bob-chose-this-one")
    assert "Password changed" in bob.success[0].value
    with session_scope() as session:
        assert not user_store.get_user(session, user_id=user.id).must_change_password


def test_admin_searches_the_audit_log_without_seeing_case_references(open_app, make_account):
    admin = make_account("root", role="admin")
    alice, bob = make_account("alice"), make_account("bob")
    with session_scope() as session:
        mine = make_analysis(session, alice.id, reference="ACC-777-SMITH")
        make_analysis(session, bob.id, reference="ACC-888-JONES")
        clinical.record_case_event(
            session, owner_id=alice.id, analysis_id=mine.id, action=audit.Action.VIEW
        )
    at = open_app(admin)
    at.number_input(key="admin_audit_analysis").set_value(mine.id).run()
    table = at.dataframe[1].value
    assert table["Action"].tolist() == ["view", "upload"]
    assert set(table["Record"]) == {f"analysis {mine.id}"}
    assert "2 event(s) match; all are shown." in [c.value for c in at.caption]
    at.number_input(key="admin_audit_analysis").set_value(None)
    at.selectbox(key="admin_audit_user").set_value(bob.id).run()
    assert set(at.dataframe[1].value["User"]) == {"bob"}
    page_text = " ".join(str(e.value) for e in at.main if hasattr(e, "value"))
    assert "ACC-" not in page_text
    assert not at.exception


def change_password(at, current: str, new: str):
    """Fill and submit the Account page's password form; the AppTest after the run."""
    at.text_input(key="pw_current").input(current)
    at.text_input(key="pw_new").input(new)
    at.text_input(key="pw_repeat").input(new)
    at.button(key="pw_submit").click()
    return at.run()


def test_account_page_changes_the_password(open_app, make_account):
    user = make_account("alice")
    at = open_app(user).switch_page("pages/account.py").run()
    change_password(at, TEST_PASSWORD, "a-brand-new-pass")
    assert "Password changed" in at.success[0].value
    with session_scope() as session:
        stored = user_store.get_user(session, user_id=user.id)
    assert verify_password("a-brand-new-pass", stored.password_hash)


def test_account_page_rejects_a_wrong_current_password(open_app, make_account):
    user = make_account("alice")
    at = open_app(user).switch_page("pages/account.py").run()
    change_password(at, "wrong-password", "a-brand-new-pass")
    assert at.error[0].value == "The current password is wrong."
