"""The sidebar card that says who is signed in."""

from __future__ import annotations

import streamlit as st

from brainloc.auth import CurrentUser
from ui.markdown import escape_markdown


def render_user_card(user: CurrentUser) -> None:
    """Name, role or category, and institution of the signed-in user."""
    with st.sidebar:
        st.markdown(f"**{escape_markdown(user.full_name)}**")
        detail = user.category if user.role == "practitioner" and user.category else user.role
        parts = [part for part in (detail.capitalize(), user.institution) if part]
        st.caption(escape_markdown(" · ".join(parts)))
