"""Streamlit helpers shared by ``app.py`` and the files in ``pages/``.

``brainloc/`` may not import Streamlit, and ``pages/`` holds only screens (Streamlit serves
every file there as a page), so the Streamlit glue that several screens share lives here:
the sign-in widgets around streamlit-authenticator (:mod:`ui.auth`), the page guard every
page calls first (:mod:`ui.guard`) and the role-based navigation (:mod:`ui.navigation`).
"""
