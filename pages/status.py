"""Account status page: all that pending, rejected and disabled accounts can see."""

import streamlit as st

from db.models import ROLES, STATUSES
from ui.guard import require_user

user = require_user(roles=ROLES, statuses=STATUSES)

MESSAGES = {
    "pending": (
        st.info,
        "Your registration has been received and is **pending approval**. An administrator "
        "checks your practitioner details before you can analyse scans. Sign in again later.",
    ),
    "rejected": (
        st.error,
        "Your registration was **not approved**. Contact your BrainLoc administrator if you "
        "think this is a mistake.",
    ),
    "disabled": (
        st.warning,
        "Your account has been **disabled** by an administrator. Contact them to re-enable it.",
    ),
    "approved": (st.success, "Your account is **approved**. Use the menu on the left."),
}

st.title("Account status")
st.subheader(f"Status: {user.status}")
show, text = MESSAGES[user.status]
show(text)
st.caption(f"Signed in as {user.username} ({user.email}).")
