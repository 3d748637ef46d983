"""Registration page: a practitioner applies for an account (pending until approved).

The browser's network address goes with the form (:func:`ui.auth.client_address`), so that
one address cannot register, or ask which usernames and emails are taken, without limit
(:mod:`brainloc.registration_throttle`).
"""

import streamlit as st

from brainloc.accounts import (
    PASSWORD_RULES,
    AccountError,
    Registration,
    RegistrationThrottled,
    register_practitioner,
)
from db import users as user_store
from db.engine import session_scope
from ui.auth import client_address
from ui.guard import require_signed_out

require_signed_out()

# The outcome of the last submit; it stays until the next one, because the script may rerun
# (a cookie component reporting back) before the message has been read.
RESULT_KEY = "_register_result"
LABELS = {
    "full_name": "Full name",
    "email": "Email",
    "username": "Username",
    "password": "Password",
    "category": "Practitioner category",
    "licence_number": "Licence / registration number",
    "institution": "Institution",
}
FIELDS = {
    "full_name": "reg_full_name",
    "email": "reg_email",
    "username": "reg_username",
    "password": "reg_password",
    "category": "reg_category",
    "licence_number": "reg_licence",
    "institution": "reg_institution",
}

with session_scope() as session:
    categories = {c.code: c.label for c in user_store.list_categories(session)}


def _submit() -> None:
    state = st.session_state
    form = Registration(
        full_name=state.get("reg_full_name", ""),
        email=state.get("reg_email", ""),
        username=state.get("reg_username", ""),
        password=state.get("reg_password", ""),
        password_repeat=state.get("reg_password_repeat", ""),
        category_code=state.get("reg_category") or "",
        licence_number=state.get("reg_licence", ""),
        institution=state.get("reg_institution", ""),
    )
    try:
        with session_scope() as session:
            user = register_practitioner(session, form=form, client_address=client_address())
            username = user.username
    except RegistrationThrottled as error:
        state[RESULT_KEY] = ("refused", error.message)
    except AccountError as error:
        state[RESULT_KEY] = ("errors", error.errors)
    else:
        state[RESULT_KEY] = ("ok", username)
        for key in (*FIELDS.values(), "reg_password_repeat"):
            state[key] = None if key == "reg_category" else ""
    # Passwords never stay in the form, whatever the outcome.
    state["reg_password"] = ""
    state["reg_password_repeat"] = ""


st.title("Register as a practitioner")
st.markdown(
    "Fill in every field. Your account stays **pending** until an administrator has checked "
    "your practitioner details; you can sign in meanwhile to see its status."
)
outcome, payload = st.session_state.get(RESULT_KEY, (None, None))
errors: dict[str, str] = payload if outcome == "errors" else {}
if outcome == "ok":
    st.success(
        f"Registration received for **{payload}**. Your account is pending approval by an "
        "administrator."
    )
elif outcome == "refused":
    st.error(payload)
elif errors:
    lines = "\n".join(f"- **{LABELS.get(field, field)}:** {text}" for field, text in errors.items())
    st.error(f"Please correct these fields:\n{lines}")

with st.form("register_form"):
    left, right = st.columns(2)
    left.text_input("Full name", key="reg_full_name", autocomplete="name")
    right.text_input("Email", key="reg_email", autocomplete="email")
    left.text_input("Username", key="reg_username", autocomplete="username")
    right.selectbox(
        "Practitioner category",
        options=list(categories),
        format_func=categories.get,
        index=None,
        placeholder="Choose your category",
        key="reg_category",
    )
    left.text_input(
        "Password",
        type="password",
        key="reg_password",
        help=PASSWORD_RULES,
        autocomplete="new-password",
    )
    right.text_input(
        "Repeat password", type="password", key="reg_password_repeat", autocomplete="new-password"
    )
    left.text_input("Licence / registration number", key="reg_licence")
    right.text_input("Institution", key="reg_institution", autocomplete="organization")
    st.form_submit_button("Register", key="reg_submit", type="primary", on_click=_submit)
