"""The versioned note editor of the case page.

Each browser tab remembers the note version its text is based on. Saving names that version;
if another tab saved in between, :class:`db.clinical_notes.StaleNoteError` refuses the save,
the newer text is shown beside the user's unsaved text (which stays in the editor), and the
user decides: keep their text and save it on top, or load the newer version. No save can
silently erase another.

Streamlit forgets a widget's value when the page is left (another page, another case). The
editor's text is therefore also kept outside the widget (``note_draft_<id>``): coming back
shows the text as it was left, saved or not, still based on the same version; without it the
editor came back empty, and a save stored an empty note as the current version.

The note of an analysis marked entered in error is shown read only (the database refuses a
save too, :data:`db.clinical.RECORD_CLOSED`): a note written after the analysis was found to
be a mistake would read as a finding about a scan that should not be used.
"""

from __future__ import annotations

import streamlit as st

from db import clinical_notes
from db.engine import session_scope
from ui.guard import guarded_callback


def _keys(analysis_id: int) -> dict[str, str]:
    names = ("text", "base", "draft", "conflict", "message")
    return {name: f"note_{name}_{analysis_id}" for name in names}


def _load_latest(analysis_id: int, owner_id: int) -> None:
    keys = _keys(analysis_id)
    with session_scope() as session:
        latest = clinical_notes.latest_note(session, analysis_id=analysis_id, owner_id=owner_id)
    st.session_state[keys["base"]] = latest.version if latest else None
    st.session_state[keys["text"]] = latest.body if latest else ""
    st.session_state.pop(keys["conflict"], None)


@guarded_callback()
def _save(analysis_id: int, owner_id: int) -> None:
    keys = _keys(analysis_id)
    state = st.session_state
    try:
        with session_scope() as session:
            note = clinical_notes.add_note_version(
                session,
                analysis_id=analysis_id,
                owner_id=owner_id,
                body=state.get(keys["text"], ""),
                base_version=state.get(keys["base"]),
            )
    except clinical_notes.StaleNoteError as error:
        state[keys["conflict"]] = (error.current.version, error.current.body)
        state[keys["message"]] = ("error", str(error).capitalize() + ".")
    except (ValueError, clinical_notes.NotFoundError) as error:
        state[keys["message"]] = ("error", str(error))
    else:
        state[keys["base"]] = note.version
        state.pop(keys["conflict"], None)
        state[keys["message"]] = ("ok", f"Note saved as version {note.version}.")


def _keep_mine(analysis_id: int) -> None:
    """The user has seen the newer version and chooses to save their text on top of it."""
    keys = _keys(analysis_id)
    version, _ = st.session_state.pop(keys["conflict"])
    st.session_state[keys["base"]] = version


def render_notes(
    analysis_id: int, *, owner_id: int, author_name: str, read_only: bool = False
) -> None:
    """The note editor and the version history of an own analysis; with ``read_only`` (an
    analysis entered in error), the current note and its history without an editor."""
    keys = _keys(analysis_id)
    state = st.session_state
    if read_only:
        st.subheader("Notes")
        st.caption(
            "Read only: this analysis was marked entered in error, so its note stays as it was "
            "when the mistake was found."
        )
        _history(analysis_id, owner_id=owner_id, author_name=author_name, expanded=True)
        return
    if keys["base"] not in state or (keys["text"] not in state and keys["draft"] not in state):
        _load_latest(analysis_id, owner_id)
    elif keys["text"] not in state:
        # Back from another page: the widget forgot its text, the draft did not.
        state[keys["text"]] = state[keys["draft"]]
    st.subheader("Notes")
    base = state.get(keys["base"])
    st.caption(f"Editing from version {base}." if base else "No note yet.")
    st.text_area("Note", height=160, max_chars=clinical_notes.MAX_NOTE_CHARS, key=keys["text"])
    state[keys["draft"]] = state[keys["text"]]
    st.button(
        "Save note",
        type="primary",
        on_click=_save,
        args=(analysis_id, owner_id),
        key=f"note_save_{analysis_id}",
    )
    outcome, message = state.pop(keys["message"], (None, ""))
    if outcome == "ok":
        st.success(message)
    elif outcome == "error":
        st.error(message)
    conflict = state.get(keys["conflict"])
    if conflict:
        version, body = conflict
        st.warning(
            f"Version {version} was saved elsewhere (another tab or window) while you were "
            "editing. Your text is still in the editor above. The newer version reads:"
        )
        st.code(body or "(empty)", language=None, wrap_lines=True)
        left, right = st.columns(2)
        left.button(
            f"Keep my text and save it over version {version}",
            on_click=_keep_mine,
            args=(analysis_id,),
            key=f"note_keep_{analysis_id}",
        )
        right.button(
            f"Discard my text and load version {version}",
            on_click=_load_latest,
            args=(analysis_id, owner_id),
            key=f"note_reload_{analysis_id}",
        )
    _history(analysis_id, owner_id=owner_id, author_name=author_name)


def _history(analysis_id: int, *, owner_id: int, author_name: str, expanded: bool = False) -> None:
    with session_scope() as session:
        history = clinical_notes.note_history(session, analysis_id=analysis_id, owner_id=owner_id)
    with st.expander(f"Note history ({len(history)} version(s))", expanded=expanded):
        if not history:
            st.caption("No versions yet.")
        for note in history:
            author = author_name if note.author_id == owner_id else f"user #{note.author_id}"
            st.markdown(
                f"**Version {note.version}** · {author} · {note.created_at:%Y-%m-%d %H:%M:%S} UTC"
            )
            st.text(note.body or "(empty)")
