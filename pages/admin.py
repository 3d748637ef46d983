"""Administration: review accounts (approve, reject, disable, re-enable, reset a forgotten
password) and the audit log.

Administrators manage accounts only; they do not browse clinical data.
"""

import pandas as pd
import streamlit as st

from brainloc.account_admin import AccountError, allowed_decisions, decide, reset_password
from db import audit
from db import users as user_store
from db.engine import session_scope
from db.models import ROLE_ADMIN, STATUSES
from db.types import utc_now
from ui.guard import require_user

admin = require_user(roles=(ROLE_ADMIN,))

# The outcome of the last submit; it stays until the next one, because the script may rerun
# (a cookie component reporting back) before the message has been read.
RESULT_KEY = "_admin_result"
AUDIT_LIMIT = 500


def _decide(user_id: int, decision: str, username: str) -> None:
    try:
        with session_scope() as session:
            decide(session, admin_id=admin.id, user_id=user_id, decision=decision)
    except AccountError as error:
        st.session_state[RESULT_KEY] = ("error", " ".join(error.errors.values()))
    else:
        st.session_state[RESULT_KEY] = ("ok", f"{username}: {decision} done.")


def _reset(user_id: int, username: str, confirm_key: str) -> None:
    st.session_state[confirm_key] = False  # a second reset needs a second confirmation
    try:
        with session_scope() as session:
            _, password = reset_password(session, admin_id=admin.id, user_id=user_id)
    except AccountError as error:
        st.session_state[RESULT_KEY] = ("error", " ".join(error.errors.values()))
    else:
        # Held in this session's memory only until the next action or "Hide"; never stored.
        st.session_state[RESULT_KEY] = ("password", (username, password))


def _hide_password() -> None:
    st.session_state.pop(RESULT_KEY, None)


def _show_one_time_password(username: str, password: str) -> None:
    st.success(
        f"{username}: password reset. Their remembered sign-ins have ended and a lockout is "
        "lifted; they must choose their own password at the next sign-in."
    )
    st.code(password, language=None)
    st.caption(
        "Pass this one-time password on in person or by calling back a number on record, not "
        "by e-mail. It is not stored and is not shown again once hidden."
    )
    st.button("Hide the password", key="admin_reset_hide", on_click=_hide_password)


with session_scope() as session:
    users = user_store.list_users(session)
    categories = {c.id: c.label for c in user_store.list_categories(session)}
    events = audit.list_events(session, limit=AUDIT_LIMIT)
names = {u.id: u.username for u in users}

st.title("Administration")
outcome, message = st.session_state.get(RESULT_KEY, (None, ""))
if outcome == "ok":
    st.success(message)
elif outcome == "error":
    st.error(message)

st.subheader("Accounts")
pending = sum(1 for u in users if u.status == "pending")
st.caption(f"{len(users)} accounts, {pending} waiting for approval.")
status_filter = st.multiselect(
    "Show statuses", options=list(STATUSES), default=list(STATUSES), key="admin_status_filter"
)
now = utc_now()
rows = [
    {
        "Username": u.username,
        "Full name": u.full_name,
        "Email": u.email,
        "Role": u.role,
        "Status": u.status,
        "Category": categories.get(u.category_id, ""),
        "Licence": u.licence_number,
        "Institution": u.institution,
        "Registered": u.created_at,
        "Last sign-in": u.last_login_at,
        "Locked until": u.locked_until if u.locked_until and u.locked_until > now else None,
    }
    for u in users
    if u.status in status_filter
]
st.dataframe(pd.DataFrame(rows), hide_index=True, key="admin_accounts_table")

st.subheader("Review an account")
others = [u for u in users if u.id != admin.id]
if not others:
    st.info("No other accounts yet. Practitioners appear here after they register.")
else:
    chosen = st.selectbox(
        "Account",
        options=[u.id for u in others],
        format_func=lambda uid: next(
            f"{u.username} — {u.full_name} ({u.status})" for u in others if u.id == uid
        ),
        key="admin_user",
    )
    target = next(u for u in others if u.id == chosen)
    decisions = allowed_decisions(target.status)
    columns = st.columns(max(len(decisions), 1))
    for column, decision in zip(columns, decisions, strict=False):
        column.button(
            decision.capitalize(),
            key=f"admin_decide_{decision}",
            on_click=_decide,
            args=(target.id, decision, target.username),
            type="primary" if decision == "approve" else "secondary",
        )
    st.markdown("**Forgotten password**")
    confirm_key = f"admin_reset_confirm_{target.id}"
    confirmed = st.checkbox(
        # The username, not the free-text full name: a checkbox label renders Markdown.
        f"I have confirmed that the person asking owns the account {target.username} (in "
        "person, or by calling back a number on record)",
        key=confirm_key,
    )
    st.button(
        "Reset password",
        key="admin_reset_password",
        disabled=not confirmed,
        help="Replaces the password with a one-time password shown here once. The account "
        "must choose its own at the next sign-in.",
        on_click=_reset,
        args=(target.id, target.username, confirm_key),
    )
    if outcome == "password":
        _show_one_time_password(*message)

st.subheader("Audit log")
actions = sorted({e.action for e in events})
action_filter = st.multiselect("Actions", options=actions, key="admin_audit_actions")
audit_rows = [
    {
        "Time (UTC)": e.created_at,
        "User": names.get(e.actor_id, "—"),
        "Action": e.action,
        "Record": f"{e.target_type} {e.target_id}" if e.target_type else "",
        "Detail": ", ".join(f"{k}={v}" for k, v in sorted(e.detail.items())),
    }
    for e in events
    if not action_filter or e.action in action_filter
]
st.caption(f"Newest {AUDIT_LIMIT} events.")
st.dataframe(pd.DataFrame(audit_rows), hide_index=True, key="admin_audit_table")
