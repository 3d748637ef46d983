"""Downloads that are built on request: a *Prepare* button first, then the download button.

Some files are too costly to build on every run of a page (the whole case as NIfTI, the audit
log as CSV). Streamlit 1.67 can build a file only when its download button is pressed
(``st.download_button(data=callable)``), but it ties the file it builds to no session, so the
end of *any* session's run marks it as unused and the next one deletes it. On a server that
other people use (every signed-in tab's idle timer runs at least once a minute), the file could be
gone before the browser fetched it, and the press brought nothing.

Here the *Prepare* button builds the file in its callback, which checks the session like every
other state-changing callback (:func:`ui.guard.guarded_callback`), and keeps it in this
browser session's state. The download button then gets the bytes themselves, so Streamlit ties
the file to this session and serves it for as long as the page shows the button. One prepared
file per button key is kept; it is dropped when the page shows that button for something else
(another case, another filter), and at every sign-in and sign-out
(:func:`ui.state.forget_user_state`). The build records the export in the audit log: the
file's address reaches the browser with the download button, and the browser can fetch it
without the button being pressed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from db.models import ROLE_PRACTITIONER
from ui.guard import guarded_callback

_STATE_PREFIX = "prepared_download_"


@dataclass(frozen=True)
class Prepared:
    """A built file, for the thing ``fingerprint`` names (a case id, an audit filter)."""

    fingerprint: Hashable
    data: bytes
    file_name: str
    made_at: datetime


def prepared_file(key: str, fingerprint: Hashable) -> Prepared | None:
    """The file prepared under ``key`` for ``fingerprint``, or None. A file prepared for
    something else is dropped here (it would only hold memory)."""
    held = st.session_state.get(_STATE_PREFIX + key)
    if held is None:
        return None
    if held.fingerprint != fingerprint:
        del st.session_state[_STATE_PREFIX + key]
        return None
    return held


def render_prepared_download(
    container: Any,
    *,
    key: str,
    fingerprint: Hashable,
    build: Callable[[], tuple[bytes, str]],
    prepare_label: str,
    download_label: str,
    mime: str,
    roles: Sequence[str] = (ROLE_PRACTITIONER,),
    disabled: bool = False,
    help: str | None = None,
    prepare_again: bool = False,
) -> Prepared | None:
    """Show the *Prepare* button or, once the file is built, its download button.

    ``build`` returns ``(data, file name)``; it runs in the *Prepare* button's
    callback, only while this session is still signed in with one of ``roles``, and records
    the export in the audit log itself: from then on the file's address is in the browser,
    which can fetch it without pressing the download button. With ``prepare_again`` a small
    button builds the file anew (for content that grows, such as the audit log). Returns the
    prepared file, if any.
    """
    state_key = _STATE_PREFIX + key

    @guarded_callback(roles=roles)
    def _prepare() -> None:
        data, file_name = build()
        st.session_state[state_key] = Prepared(
            fingerprint=fingerprint, data=data, file_name=file_name, made_at=datetime.now(UTC)
        )

    held = prepared_file(key, fingerprint)
    if held is None:
        container.button(
            prepare_label,
            on_click=_prepare,
            disabled=disabled,
            help=help,
            icon=":material/build:",
            key=f"{key}_prepare",
        )
        return None
    container.download_button(
        download_label,
        data=held.data,
        file_name=held.file_name,
        mime=mime,
        on_click="ignore",  # nothing to do: the file is there, and audited when it was built
        help=help,
        key=f"{key}_download",
    )
    if prepare_again:
        container.button(
            "Prepare again",
            on_click=_prepare,
            help="Build the file anew, with what has been added since "
            f"{held.made_at:%H:%M:%S} UTC.",
            key=f"{key}_again",
        )
    return held
