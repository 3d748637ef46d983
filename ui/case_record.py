"""The Case page's "Correct the record": correct the case reference of an own analysis, or
mark it entered in error (with a reason and a confirmation: the mark is final), and the banner
an analysis entered in error carries.

Like the note editor (:mod:`ui.notes`), each browser tab remembers the reference version its
correction is based on; if another tab corrected the reference in between,
:class:`db.clinical_corrections.StaleReferenceError` refuses the save, the newer reference is
shown beside the user's text (which stays in the field), and the user decides: save theirs
over it, or take the newer one. The earlier references are listed with who set them and when.
"""

from __future__ import annotations

import streamlit as st

from brainloc.casework import StoredCase
from db import clinical, clinical_corrections
from db.engine import session_scope
from ui.guard import guarded_callback
from ui.markdown import escape_markdown

#: session_state keys of the entered-in-error form, per analysis.
REASON_KEY = "error_reason_{}"
CONFIRM_KEY = "error_confirm_{}"
ERROR_MESSAGE_KEY = "error_message_{}"


def _keys(analysis_id: int) -> dict[str, str]:
    names = ("text", "base", "conflict", "message")
    return {name: f"reference_{name}_{analysis_id}" for name in names}


def _load_current(analysis_id: int, owner_id: int) -> None:
    keys = _keys(analysis_id)
    with session_scope() as session:
        history = clinical_corrections.reference_history(
            session, analysis_id=analysis_id, owner_id=owner_id
        )
    if history:
        st.session_state[keys["base"]] = history[0].version
        st.session_state[keys["text"]] = history[0].reference
    st.session_state.pop(keys["conflict"], None)


@guarded_callback()
def _save(analysis_id: int, owner_id: int) -> None:
    keys = _keys(analysis_id)
    state = st.session_state
    try:
        with session_scope() as session:
            saved = clinical_corrections.correct_case_reference(
                session,
                analysis_id=analysis_id,
                owner_id=owner_id,
                reference=state.get(keys["text"], ""),
                base_version=state.get(keys["base"]),
            )
    except clinical_corrections.StaleReferenceError as error:
        state[keys["conflict"]] = (error.current.version, error.current.reference)
        state[keys["message"]] = ("error", str(error).capitalize() + ".")
    except (ValueError, clinical_corrections.NotFoundError) as error:
        state[keys["message"]] = ("error", f"Not saved: {error}.")
    else:
        unchanged = saved.version == state.get(keys["base"])
        state[keys["base"]] = saved.version
        state[keys["text"]] = saved.reference
        state.pop(keys["conflict"], None)
        state[keys["message"]] = (
            ("info", "The case reference is unchanged; nothing was saved.")
            if unchanged
            else ("ok", f"Case reference corrected (version {saved.version}).")
        )


def _keep_mine(analysis_id: int) -> None:
    """The user has seen the newer reference and chooses to save theirs over it."""
    keys = _keys(analysis_id)
    version, _ = st.session_state.pop(keys["conflict"])
    st.session_state[keys["base"]] = version


def render_reference_correction(case: StoredCase, *, owner_id: int, author_name: str) -> None:
    """The corrected-reference field, its save button and the references the case had."""
    keys = _keys(case.id)
    state = st.session_state
    # Streamlit forgets the field's value when the page is left: coming back is a new look at
    # the record, so the field and its base start again from the current reference.
    if keys["base"] not in state or keys["text"] not in state:
        _load_current(case.id, owner_id)
    st.markdown("**Correct the case reference**")
    st.caption(
        "For a typo or a wrong reference. The earlier reference is kept with who changed it "
        "and when, and reports issued from now on say it was corrected."
    )
    st.text_input(
        "Corrected case reference", max_chars=clinical.MAX_REFERENCE_CHARS, key=keys["text"]
    )
    st.button(
        "Save the corrected reference",
        on_click=_save,
        args=(case.id, owner_id),
        key=f"reference_save_{case.id}",
    )
    outcome, message = state.pop(keys["message"], (None, ""))
    if outcome == "ok":
        st.success(message)
    elif outcome == "info":
        st.info(message)
    elif outcome == "error":
        st.error(message)
    conflict = state.get(keys["conflict"])
    if conflict:
        version, reference = conflict
        st.warning(
            f"The reference was corrected elsewhere (another tab or window) to "
            f"“{escape_markdown(reference)}” (version {version}) while you were editing. "
            "Your text is still in the field above."
        )
        left, right = st.columns(2)
        left.button(
            f"Keep my text and save it over version {version}",
            on_click=_keep_mine,
            args=(case.id,),
            key=f"reference_keep_{case.id}",
        )
        right.button(
            f"Discard my text and take version {version}",
            on_click=_load_current,
            args=(case.id, owner_id),
            key=f"reference_reload_{case.id}",
        )
    if len(case.references) > 1:
        lines = []
        for item in case.references:
            author = author_name if item.author_id == owner_id else f"user #{item.author_id}"
            how = "at upload" if item.version == 1 else "corrected"
            lines.append(
                f"- Version {item.version} ({how}) · {author} · "
                f"{item.created_at:%Y-%m-%d %H:%M:%S} UTC: {escape_markdown(item.reference)}"
            )
        st.markdown("Case references, newest first:\n" + "\n".join(lines))


def render_entered_in_error_banner(case: StoredCase, *, author_name: str) -> None:
    """The unmistakable banner of an analysis marked entered in error (nothing otherwise)."""
    if not case.entered_in_error:
        return
    st.error(
        f"**ENTERED IN ERROR** · marked by {escape_markdown(author_name)} on "
        f"{case.entered_in_error_at:%Y-%m-%d %H:%M} UTC. Reason: "
        f"{escape_markdown(case.entered_in_error_reason)}\n\n"
        "Kept as a record only: do not use its result. It is left out of History (unless "
        "its filter shows it) and of follow-up comparison; its notes and case reference can "
        "be read but not changed, and a report issued from now on says it was entered in "
        "error.",
        icon=":material/block:",
    )


def _ask_to_confirm(analysis_id: int) -> None:
    """The first step: a reason is required before the confirmation is even asked."""
    state = st.session_state
    if not state.get(REASON_KEY.format(analysis_id), "").strip():
        state[ERROR_MESSAGE_KEY.format(analysis_id)] = "Not marked: a reason is required."
        return
    state[CONFIRM_KEY.format(analysis_id)] = True


def _cancel(analysis_id: int) -> None:
    st.session_state.pop(CONFIRM_KEY.format(analysis_id), None)


@guarded_callback()
def _mark(analysis_id: int, owner_id: int) -> None:
    state = st.session_state
    state.pop(CONFIRM_KEY.format(analysis_id), None)
    try:
        with session_scope() as session:
            clinical_corrections.mark_entered_in_error(
                session,
                analysis_id=analysis_id,
                owner_id=owner_id,
                reason=state.get(REASON_KEY.format(analysis_id), ""),
            )
    except (ValueError, clinical_corrections.NotFoundError) as error:
        state[ERROR_MESSAGE_KEY.format(analysis_id)] = f"Not marked: {error}."


def render_entered_in_error_form(case: StoredCase, *, owner_id: int) -> None:
    """Mark the analysis entered in error: a required reason, then a confirmation."""
    st.markdown("**Mark as entered in error**")
    st.caption(
        "For an analysis that should not exist: the wrong scan, or another patient's. It is "
        "kept (nothing is deleted) but set apart for good; analyse the right scan as a new "
        "analysis."
    )
    st.text_input(
        "Reason (required)",
        max_chars=clinical_corrections.MAX_REASON_CHARS,
        placeholder="e.g. scan of another patient uploaded under this case",
        key=REASON_KEY.format(case.id),
    )
    message = st.session_state.pop(ERROR_MESSAGE_KEY.format(case.id), "")
    if message:
        st.error(message)
    if not st.session_state.get(CONFIRM_KEY.format(case.id)):
        st.button(
            "Mark as entered in error…",
            on_click=_ask_to_confirm,
            args=(case.id,),
            key=f"error_mark_{case.id}",
        )
        return
    st.warning(
        "Mark this analysis entered in error? This is final: it cannot be undone, and its "
        "notes and case reference cannot be changed afterwards."
    )
    left, right = st.columns(2)
    left.button(
        "Yes, mark it entered in error",
        type="primary",
        on_click=_mark,
        args=(case.id, owner_id),
        key=f"error_confirm_button_{case.id}",
    )
    right.button("Cancel", on_click=_cancel, args=(case.id,), key=f"error_cancel_{case.id}")
