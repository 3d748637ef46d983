"""Administration: review accounts (approve, reject, disable, re-enable, reset a forgotten
password, turn off the two-step sign-in of someone who lost their phone) and the audit log.

Administrators manage accounts only; they do not browse clinical data.
"""

import pandas as pd
import streamlit as st

from brainloc.account_admin import AccountError, allowed_decisions, decide, reset_password
from brainloc.accounts import ONE_TIME_PASSWORD_HOURS
from brainloc.audit_log import AuditFilter, audit_csv, audit_frame, export_name
from brainloc.two_step import reset_by_admin
from db import audit
from db import users as user_store
from db.engine import session_scope
from db.models import ROLE_ADMIN, STATUSES
from db.types import utc_now
from ui.guard import guarded_callback, require_user
from ui.prepared import render_prepared_download

admin = require_user(roles=(ROLE_ADMIN,))

# The outcome of the last submit; it stays until the next one, because the script may rerun
# (a cookie component reporting back) before the message has been read.
RESULT_KEY = "_admin_result"
AUDIT_LIMIT = 500
EXPORT_LIMIT = 100_000


@guarded_callback(roles=(ROLE_ADMIN,))
def _decide(user_id: int, decision: str, username: str) -> None:
    try:
        with session_scope() as session:
            decide(session, admin_id=admin.id, user_id=user_id, decision=decision)
    except AccountError as error:
        st.session_state[RESULT_KEY] = ("error", error.message)
    else:
        st.session_state[RESULT_KEY] = ("ok", f"{username}: {decision} done.")


def _confirmed(confirm_key: str) -> bool:
    """Whether the "I have confirmed who is asking" box was ticked. Checked here too, not
    only by the disabled button, which a modified browser could press anyway. The tick is
    cleared, so a second reset needs a second confirmation."""
    confirmed = bool(st.session_state.get(confirm_key))
    st.session_state[confirm_key] = False
    if not confirmed:
        st.session_state[RESULT_KEY] = ("error", "First confirm who is asking (the tick box).")
    return confirmed


@guarded_callback(roles=(ROLE_ADMIN,))
def _reset(user_id: int, username: str, confirm_key: str) -> None:
    if not _confirmed(confirm_key):
        return
    try:
        with session_scope() as session:
            _, password = reset_password(session, admin_id=admin.id, user_id=user_id)
    except AccountError as error:
        st.session_state[RESULT_KEY] = ("error", error.message)
    else:
        # Held in this session's memory only until the next action or "Hide"; never stored.
        st.session_state[RESULT_KEY] = ("password", (username, password))


@guarded_callback(roles=(ROLE_ADMIN,))
def _reset_two_step(user_id: int, username: str, confirm_key: str) -> None:
    if not _confirmed(confirm_key):
        return
    try:
        with session_scope() as session:
            reset_by_admin(session, admin_id=admin.id, user_id=user_id)
    except AccountError as error:
        st.session_state[RESULT_KEY] = ("error", error.message)
    else:
        st.session_state[RESULT_KEY] = (
            "ok",
            f"{username}: two-step sign-in is off and their sessions have ended. "
            "Their password alone signs them in until they set it up again.",
        )


def _hide_password() -> None:
    st.session_state.pop(RESULT_KEY, None)


def _show_one_time_password(username: str, password: str) -> None:
    st.success(
        f"{username}: password reset. Their sessions have ended and a lockout is "
        "lifted; they must choose their own password at the next sign-in."
    )
    st.code(password, language=None)
    st.caption(
        f"It signs in once, within {ONE_TIME_PASSWORD_HOURS} hours; then they choose their own "
        "in that session (if it expires or they sign out first, reset it again). Pass this "
        "one-time password on in person or by calling back a number on record, not by e-mail. "
        "It is not stored and is not shown again once hidden."
    )
    st.button("Hide the password", key="admin_reset_hide", on_click=_hide_password)


with session_scope() as session:
    users = user_store.list_users(session)
    categories = {c.id: c.label for c in user_store.list_categories(session)}
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
        "Two-step sign-in": "on" if u.totp_secret else "off",
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
    # No status in the option labels: the browser keeps showing the label an option had when
    # it was chosen, so "(pending)" stayed beside the account just approved. It goes below.
    chosen = st.selectbox(
        "Account",
        options=[u.id for u in others],
        format_func=lambda uid: next(
            f"{u.username} — {u.full_name}" for u in others if u.id == uid
        ),
        key="admin_user",
    )
    target = next(u for u in others if u.id == chosen)
    st.markdown(f"Status: **{target.status}**")
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
    st.markdown("**Forgotten password or lost phone**")
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
    if target.totp_secret:
        st.button(
            "Turn off two-step sign-in",
            key="admin_reset_two_step",
            disabled=not confirmed,
            help="For someone who lost both their phone and their recovery codes. Their "
            "sessions end; they can set it up again on the Account page (and must, "
            "where this BrainLoc requires it).",
            on_click=_reset_two_step,
            args=(target.id, target.username, confirm_key),
        )
    if outcome == "password":
        _show_one_time_password(*message)

st.subheader("Audit log")
st.caption("Who did what, and when. Records are named by their id; case references are not shown.")
left, middle, right, last = st.columns([2, 3, 2, 1])
user_id = left.selectbox(
    "Involving account",
    [None, *names],
    format_func=lambda uid: "anyone" if uid is None else names[uid],
    help="Its own actions and what was done to the account.",
    key="admin_audit_user",
)
with session_scope() as session:
    known_actions = audit.list_actions(session)
chosen_actions = middle.multiselect("Actions", options=known_actions, key="admin_audit_actions")
days = right.date_input("Days (UTC)", value=(), key="admin_audit_days")
analysis_id = last.number_input(
    "Analysis #", min_value=1, value=None, step=1, key="admin_audit_analysis"
)
days = tuple(days) if isinstance(days, list | tuple) else (days,)
audit_filter = AuditFilter(
    user_id=user_id,
    actions=tuple(chosen_actions),
    first_day=days[0] if days else None,
    last_day=days[-1] if days else None,
    analysis_id=int(analysis_id) if analysis_id is not None else None,
)
with session_scope() as session:
    matching = audit.count_matching(session, **audit_filter.query())
    events = audit.list_events(session, **audit_filter.query(), limit=AUDIT_LIMIT)
shown = f"the newest {AUDIT_LIMIT} are shown" if matching > AUDIT_LIMIT else "all are shown"
st.caption(f"{matching} event(s) match; {shown}.")
st.dataframe(audit_frame(events, names), hide_index=True, key="admin_audit_table")


def _build_export() -> tuple[bytes, str]:
    """Every matching event as CSV (built by the Prepare button's callback, which checks
    this session first), audited as an export: from now on the browser can fetch it."""
    with session_scope() as session:
        rows = audit.list_events(session, **audit_filter.query(), limit=EXPORT_LIMIT)
        audit.record_event(
            session, action=audit.Action.EXPORT, actor_id=admin.id,
            detail={"what": "audit_csv", "rows": len(rows)},
        )  # fmt: skip
    return audit_csv(audit_frame(rows, names)), export_name(utc_now())


render_prepared_download(
    st,
    key="admin_audit_csv",
    fingerprint=audit_filter,
    build=_build_export,
    prepare_label="Prepare these events as CSV",
    download_label="Download these events (CSV)",
    mime="text/csv",
    roles=(ROLE_ADMIN,),
    disabled=matching == 0,
    help=f"All matching events, up to {EXPORT_LIMIT:,}, oldest last.",
    prepare_again=True,
)
