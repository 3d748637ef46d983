"""The sidebar card that says who is signed in."""

from __future__ import annotations

import re

import streamlit as st

from brainloc.auth import CurrentUser

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def escape_markdown(text: str) -> str:
    """``text`` with Markdown syntax escaped, so user-supplied names render literally."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def render_user_card(user: CurrentUser) -> None:
    """Name, role or category, and institution of the signed-in user."""
    with st.sidebar:
        st.markdown(f"**{escape_markdown(user.full_name)}**")
        detail = user.category if user.role == "practitioner" and user.category else user.role
        parts = [part for part in (detail.capitalize(), user.institution) if part]
        st.caption(escape_markdown(" · ".join(parts)))
