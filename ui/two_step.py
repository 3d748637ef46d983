"""The Account page's "Two-step sign-in" section: set it up, renew recovery codes, turn it off.

The rules live in :mod:`brainloc.two_step`; this module only renders and hands the form
values over. A new secret stays in this browser session (``_two_step_enrolment``) until a
code from the app confirms it, so an abandoned set-up saves nothing. Recovery codes are
shown once, right after they are made, until the user says they have saved them.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from sqlmodel import Session

from brainloc import two_step
from brainloc.accounts import AccountError
from brainloc.auth import CurrentUser
from db.engine import session_scope
from db.models import ROLES
from ui.auth import keep_this_session, renew_cookie
from ui.guard import guarded_callback

ENROLMENT_KEY = "_two_step_enrolment"
#: The recovery codes just made, shown until the user confirms they saved them.
CODES_KEY = "_two_step_new_codes"
#: The outcome of the last form: ("ok" | "error", message).
RESULT_KEY = "_two_step_result"
#: One-shot: re-issue this browser's sign-in cookie after two-step sign-in was turned on
#: (turning it on ends every remembered sign-in made with the password alone).
RENEW_KEY = "_two_step_renew_cookie"


def _run(action: Callable[[Session], object], *, ok: str) -> None:
    """Run ``action(session)`` and keep its outcome for the page; new codes are kept too."""
    try:
        with session_scope() as session:
            codes = action(session)
    except AccountError as error:
        st.session_state[RESULT_KEY] = ("error", error.message)
        return
    st.session_state[RESULT_KEY] = ("ok", ok)
    if isinstance(codes, list):
        st.session_state[CODES_KEY] = codes


def _start(user: CurrentUser) -> None:
    st.session_state.pop(RESULT_KEY, None)
    st.session_state[ENROLMENT_KEY] = two_step.new_enrolment(username=user.username)


def _cancel() -> None:
    st.session_state.pop(RESULT_KEY, None)
    st.session_state.pop(ENROLMENT_KEY, None)


@guarded_callback(roles=ROLES, password_page=True)
def _confirm(user: CurrentUser) -> None:
    enrolment = st.session_state.get(ENROLMENT_KEY)
    code = st.session_state.get("two_step_setup_code", "")
    st.session_state["two_step_setup_code"] = ""
    if enrolment is None:
        return
    _run(
        lambda session: two_step.enable(session, user_id=user.id, enrolment=enrolment, code=code),
        ok="Two-step sign-in is on. Other browsers will have to sign in again, with a code.",
    )
    if st.session_state[RESULT_KEY][0] == "ok":
        st.session_state.pop(ENROLMENT_KEY, None)
        st.session_state[RENEW_KEY] = True
        keep_this_session()


@guarded_callback(roles=ROLES, password_page=True)
def _renew_codes(user: CurrentUser) -> None:
    code = st.session_state.get("two_step_renew_code", "")
    st.session_state["two_step_renew_code"] = ""
    _run(
        lambda session: two_step.renew_recovery_codes(session, user_id=user.id, code=code),
        ok="New recovery codes made; the old ones no longer work.",
    )


@guarded_callback(roles=ROLES, password_page=True)
def _turn_off(user: CurrentUser) -> None:
    password = st.session_state.get("two_step_off_password", "")
    code = st.session_state.get("two_step_off_code", "")
    st.session_state["two_step_off_password"] = ""
    st.session_state["two_step_off_code"] = ""
    _run(
        lambda session: two_step.disable(session, user_id=user.id, password=password, code=code),
        ok="Two-step sign-in is off: your password alone signs you in.",
    )


def _codes_saved() -> None:
    st.session_state.pop(CODES_KEY, None)


def _render_new_codes(codes: list[str]) -> None:
    st.warning(
        "**Save these recovery codes now**, somewhere other than your phone (printed, or in "
        "your password manager). Each one signs you in once instead of a code. They will not "
        "be shown again.",
        icon=":material/key:",
    )
    st.code("\n".join(codes), language=None)
    st.download_button(
        "Download the recovery codes (.txt)",
        data="BrainLoc recovery codes (each works once)\n" + "\n".join(codes) + "\n",
        file_name="brainloc-recovery-codes.txt",
        mime="text/plain",
        key="two_step_codes_download",
    )
    st.button("I have saved them", key="two_step_codes_saved", on_click=_codes_saved)


def _render_setup(user: CurrentUser) -> None:
    enrolment: two_step.Enrolment | None = st.session_state.get(ENROLMENT_KEY)
    if enrolment is None or enrolment.username != user.username:
        st.markdown(
            "After your password, BrainLoc will also ask for a 6-digit code from an "
            "authenticator app on your phone (Google or Microsoft Authenticator, FreeOTP, "
            "Aegis, 1Password …), so a stolen password alone no longer opens your account."
        )
        st.button(
            "Set up two-step sign-in",
            key="two_step_start",
            on_click=_start,
            args=(user,),
            type="primary" if user.must_set_up_two_step else "secondary",
        )
        return
    qr, steps = st.columns([1, 2])
    with qr:
        st.image(enrolment.qr_png(), caption="Scan with your authenticator app", width=220)
    with steps:
        st.markdown(
            "1. In your authenticator app, add an account and **scan the QR code**.\n"
            "2. If the app cannot scan, choose to enter a key and type this one "
            "(time-based, 6 digits):"
        )
        st.code(enrolment.grouped_secret, language=None)
        st.markdown("3. Type the 6-digit code the app now shows for BrainLoc.")
        with st.form("two_step_setup_form"):
            st.text_input(
                "Code from the app", key="two_step_setup_code", autocomplete="one-time-code"
            )
            st.form_submit_button(
                "Turn on two-step sign-in",
                key="two_step_confirm",
                type="primary",
                on_click=_confirm,
                args=(user,),
            )
        st.button("Cancel", key="two_step_cancel_setup", on_click=_cancel)


def _render_enabled(user: CurrentUser, status: two_step.TwoStepStatus) -> None:
    since = f"{status.enabled_at:%Y-%m-%d %H:%M} UTC" if status.enabled_at else "earlier"
    st.success(
        f"Two-step sign-in is **on** (since {since}). "
        f"Unused recovery codes: **{status.recovery_codes_left}**.",
        icon=":material/verified_user:",
    )
    if status.recovery_codes_left <= 3:
        st.warning("Few recovery codes are left: make new ones below.")
    with st.expander("Make new recovery codes"), st.form("two_step_renew_form"):
        st.text_input("Code from the app", key="two_step_renew_code", autocomplete="one-time-code")
        st.form_submit_button(
            "Make new recovery codes", key="two_step_renew", on_click=_renew_codes, args=(user,)
        )
    with st.expander("Turn two-step sign-in off"):
        if user.two_step_required:
            st.info(
                "This BrainLoc requires two-step sign-in for your account, so it stays on. "
                "New phone? Ask your administrator to reset it, then set it up again."
            )
            return
        with st.form("two_step_off_form"):
            st.text_input(
                "Password",
                type="password",
                key="two_step_off_password",
                autocomplete="current-password",
            )
            st.text_input(
                "Code from the app, or a recovery code",
                key="two_step_off_code",
                autocomplete="one-time-code",
            )
            st.form_submit_button(
                "Turn two-step sign-in off", key="two_step_off", on_click=_turn_off, args=(user,)
            )


def render_two_step_section(user: CurrentUser) -> None:
    """The whole section, for the signed-in ``user``."""
    st.subheader("Two-step sign-in")
    if user.must_set_up_two_step:
        st.info(
            "This BrainLoc requires two-step sign-in for your account. Set it up to open the "
            "other pages."
        )
    if st.session_state.pop(RENEW_KEY, False):
        renew_cookie()
    codes = st.session_state.get(CODES_KEY)
    if codes:
        _render_new_codes(codes)
    with session_scope() as session:
        status = two_step.status(session, user_id=user.id)
    if status.enabled:
        _render_enabled(user, status)
    else:
        _render_setup(user)
    outcome, message = st.session_state.get(RESULT_KEY, (None, ""))
    if outcome == "ok":
        st.success(message)
    elif outcome == "error":
        st.error(message)
