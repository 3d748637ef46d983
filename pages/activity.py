"""Recent activity page: the practitioner's latest actions, newest first, each linking to its case.

Read from the audit log through :func:`db.clinical_activity.recent_activity`, which returns only the
signed-in user's own events.
"""

import streamlit as st

from db.audit import Action
from db.clinical_activity import recent_activity
from db.engine import session_scope
from ui.guard import require_user
from ui.markdown import escape_markdown

user = require_user()

LABELS = {
    Action.UPLOAD: ("Analysed", ":material/biotech:"),
    Action.VIEW: ("Opened", ":material/visibility:"),
    Action.NOTE_EDIT: ("Edited the note of", ":material/edit_note:"),
    Action.REPORT_ISSUE: ("Issued a report for", ":material/picture_as_pdf:"),
    Action.REPORT_DOWNLOAD: ("Downloaded a report of", ":material/download:"),
    Action.DOWNLOAD: ("Downloaded images of", ":material/download:"),
    Action.EXPORT: ("Exported the history", ":material/table:"),
    Action.REFERENCE_CORRECTED: ("Corrected the case reference of", ":material/edit:"),
    Action.ENTERED_IN_ERROR: ("Marked entered in error:", ":material/block:"),
}

st.title("Recent activity")
limit = st.select_slider("Show the last", [25, 50, 100, 200], value=50, key="activity_limit")
with session_scope() as session:
    items = recent_activity(session, owner_id=user.id, limit=limit)
if not items:
    st.info("Nothing yet. Your uploads, notes and reports will be listed here.")
    st.stop()
for item in items:
    verb, icon = LABELS.get(item.action, (item.action.replace("_", " ").capitalize(), None))
    when, what = st.columns([1, 4])
    when.caption(f"{item.at:%Y-%m-%d %H:%M:%S} UTC")
    if item.analysis_id is not None:
        detail = ""
        if item.action == Action.NOTE_EDIT and item.detail.get("version"):
            detail = f" (version {item.detail['version']})"
        elif item.action == Action.REFERENCE_CORRECTED and item.detail.get("version"):
            detail = f" (reference version {item.detail['version']})"
        what.page_link(
            "pages/case.py",
            label=f"{verb} {escape_markdown(item.case_reference)} (#{item.analysis_id}){detail}",
            icon=icon,
            query_params={"id": str(item.analysis_id)},
        )
    else:
        what.markdown(f"{verb}")
