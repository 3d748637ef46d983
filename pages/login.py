"""Sign-in page: the first thing a signed-out visitor sees."""

import streamlit as st

from ui.auth import awaiting_code, render_login_form
from ui.guard import require_signed_out
from ui.idle import idle_notice
from ui.state import ENDED_NOTICE_KEY, SESSION_ENDED_NOTICE

require_signed_out()

st.title("BrainLoc")
st.caption("Brain tumor detection and localization on MRI, for registered practitioners.")
left, _ = st.columns([2, 3])
with left:
    if notice := idle_notice():
        st.info(notice, icon=":material/lock_clock:")
    elif st.session_state.get(ENDED_NOTICE_KEY):
        st.info(SESSION_ENDED_NOTICE, icon=":material/lock_reset:")
    render_login_form()
    if not awaiting_code():
        st.markdown(
            "New here? **Register** from the menu. An administrator approves every account "
            "before it can analyse scans."
        )
        st.caption(
            "Forgot your password? Ask your BrainLoc administrator: after confirming it is "
            "you, they give you a one-time password, and you choose your own when you sign in "
            "with it."
        )
st.caption(
    "BrainLoc supports, and does not replace, a specialist's judgement. Research and "
    "decision-support use only; not a diagnostic device."
)
