"""BrainLoc entry point: sign-in handling, then a navigation built from the user's role.

Run with ``make run`` (or ``.venv/bin/streamlit run app.py``).
"""

import streamlit as st

from brainloc.log_format import configure_logging
from brainloc.settings import get_settings
from ui.auth import render_logout_button, start_run
from ui.idle import expire_idle_session, render_idle_timer
from ui.navigation import build_navigation, continue_to_requested_page
from ui.page_icon import page_icon
from ui.sidebar import render_user_card
from ui.state import CODE_ATTEMPT_KEY, LOGIN_ATTEMPT_KEY, SHELL_KEY, current_user

# Before anything can log: text from an uploaded file in a log record cannot forge another.
configure_logging()
# The icon is served by the app itself: a ":material/...:" icon is fetched from Google.
st.set_page_config(page_title="BrainLoc", page_icon=page_icon(), layout="wide")
try:
    get_settings()
except ValueError as error:
    # A wrong environment variable: say which and why, instead of a bare error box.
    st.error(f"BrainLoc is not configured correctly: {error}. Fix it and restart the server.")
    st.stop()
# A password or a two-step code submitted in the previous interaction is checked in this run.
signing_in = LOGIN_ATTEMPT_KEY in st.session_state or CODE_ATTEMPT_KEY in st.session_state
expire_idle_session()
start_run()
user = current_user()
page = build_navigation(user, signing_in=signing_in)
continue_to_requested_page(user, signing_in=signing_in)
if user is not None:
    render_user_card(user)
    render_logout_button()
    render_idle_timer()
# The marker tells the page guard that app.py runs this very run; it is removed however the
# page ends (stop, rerun, exception), so a page file run on its own never finds it.
st.session_state[SHELL_KEY] = True
try:
    page.run()
finally:
    st.session_state.pop(SHELL_KEY, None)
