"""Account page: the signed-in user's details, password change, two-step sign-in, and their
recent sign-ins and account changes."""

import streamlit as st

from brainloc.account_admin import change_password
from brainloc.accounts import PASSWORD_RULES, AccountError
from db.engine import session_scope
from db.models import ROLES
from ui.account_security import render_security_section
from ui.auth import keep_this_session, renew_cookie
from ui.guard import guarded_callback, require_user
from ui.two_step import render_two_step_section

user = require_user(roles=ROLES, password_page=True)

# The outcome of the last submit; it stays until the next one, because the script may rerun
# (a cookie component reporting back) before the message has been read.
RESULT_KEY = "_password_result"
#: One-shot: re-issue this browser's sign-in cookie after a password change.
RENEW_KEY = "_password_renew_cookie"


@guarded_callback(roles=ROLES, password_page=True)
def _submit() -> None:
    state = st.session_state
    try:
        with session_scope() as session:
            change_password(
                session,
                user_id=user.id,
                current_password=state.get("pw_current", ""),
                new_password=state.get("pw_new", ""),
                new_password_repeat=state.get("pw_repeat", ""),
            )
    except AccountError as error:
        state[RESULT_KEY] = ("error", error.message)
    else:
        state[RESULT_KEY] = ("ok", "Password changed. Other browsers will have to sign in again.")
        state[RENEW_KEY] = True
        keep_this_session()
    for key in ("pw_current", "pw_new", "pw_repeat"):
        state[key] = ""


st.title("Account")
details = {
    "Full name": user.full_name,
    "Username": user.username,
    "Email": user.email,
    "Role": user.role,
}
if user.role == "practitioner":
    details |= {
        "Category": user.category,
        "Licence / registration number": user.licence_number,
        "Institution": user.institution,
    }
st.table({"Detail": list(details), "Value": list(details.values())}, hide_index=True)

st.subheader("Change password")
if user.must_change_password:
    st.info("This password was generated for you. Choose your own to open the rest of BrainLoc.")
outcome, message = st.session_state.get(RESULT_KEY, (None, ""))
with st.form("password_form"):
    st.text_input("Current password", type="password", key="pw_current")
    st.text_input(
        "New password",
        type="password",
        key="pw_new",
        help=PASSWORD_RULES,
    )
    st.text_input("Repeat new password", type="password", key="pw_repeat")
    st.form_submit_button("Change password", key="pw_submit", on_click=_submit)
if st.session_state.pop(RENEW_KEY, False):
    renew_cookie()
if outcome == "ok":
    st.success(message)
elif outcome == "error":
    st.error(message)

render_two_step_section(user)
render_security_section(user)
