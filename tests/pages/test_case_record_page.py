"""AppTest of correcting the record on the Case page: the case reference corrected (kept,
audited, shown, searchable, stale tabs refused), an analysis marked entered in error (reason,
confirmation, banner, closed note, report), and what the History and Activity pages make of
them."""

from __future__ import annotations

import re

from sqlmodel import Session

from db import clinical, clinical_activity
from db.audit import Action
from db.clinical_corrections import mark_entered_in_error, reference_history
from db.engine import get_engine
from tests.pages.workflow_fixtures import *  # noqa: F403 - fixtures
from tests.pages.workflow_fixtures import open_page


def _texts(elements) -> str:
    """The elements' text as shown: Markdown escapes (text users wrote, ui.markdown) undone."""
    return re.sub(
        r"\\(.)", r"\1", " | ".join(str(getattr(element, "value", element)) for element in elements)
    )


def _session(clinic):
    return Session(get_engine(clinic.settings.database_url), expire_on_commit=False)


def _references(clinic, analysis_id, owner_id) -> list[str]:
    with _session(clinic) as session:
        return [
            v.reference
            for v in reference_history(session, analysis_id=analysis_id, owner_id=owner_id)
        ]


def _correct(at, analysis_id, reference):
    at.text_input(key=f"reference_text_{analysis_id}").set_value(reference)
    return at.button(key=f"reference_save_{analysis_id}").click().run()


def test_the_owner_corrects_the_reference_and_every_page_shows_the_new_one(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "CAES-17")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    assert at.text_input(key=f"reference_text_{analysis_id}").value == "CAES-17"
    at = _correct(at, analysis_id, "  CASE-17  ")
    assert not at.exception
    assert "corrected (version 2)" in _texts(at.success)
    assert _texts(at.subheader[:1]) == "CASE-17"
    assert "reference corrected" in _texts(at.caption)
    shown = _texts(at.markdown)
    assert "Version 2 (corrected)" in shown and "Version 1 (at upload)" in shown
    assert "CAES-17" in shown
    assert _references(clinic, analysis_id, clinic.alice) == ["CASE-17", "CAES-17"]
    # The picker names the case by its current reference.
    assert at.selectbox(key="case_select").options[0].startswith("CASE-17 · ")
    history = open_page("history.py", clinic.alice)
    history = history.text_input(key="history_text").set_value("case-17").run()
    assert list(history.dataframe[0].value["id"]) == [analysis_id]
    activity = open_page("activity.py", clinic.alice)
    labels = _texts(element.proto.label for element in activity.get("page_link"))
    assert f"Corrected the case reference of CASE-17 (#{analysis_id}) (reference version 2)" in (
        labels
    )


def test_a_bad_reference_says_why_and_saves_nothing(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "KEEP-1")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at = _correct(at, analysis_id, "   ")
    assert not at.exception
    assert "Not saved: a case reference is required." in _texts(at.error)
    assert _texts(at.subheader[:1]) == "KEEP-1"
    assert _references(clinic, analysis_id, clinic.alice) == ["KEEP-1"]
    with _session(clinic) as session:
        events = clinical_activity.recent_activity(session, owner_id=clinic.alice)
    assert Action.REFERENCE_CORRECTED not in [item.action for item in events]


def test_a_second_tab_cannot_silently_overwrite_a_correction(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "TYPO")
    tab_a = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    tab_b = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    tab_a = _correct(tab_a, analysis_id, "FROM-A")
    tab_b = _correct(tab_b, analysis_id, "FROM-B")
    assert not tab_b.exception
    assert "not saved" in _texts(tab_b.error)
    assert "FROM-A" in _texts(tab_b.warning)
    assert tab_b.text_input(key=f"reference_text_{analysis_id}").value == "FROM-B"
    assert _references(clinic, analysis_id, clinic.alice) == ["FROM-A", "TYPO"]
    # Having seen version 2, the user keeps their text: it becomes version 3, A's stays on record.
    tab_b = tab_b.button(key=f"reference_keep_{analysis_id}").click().run()
    tab_b = tab_b.button(key=f"reference_save_{analysis_id}").click().run()
    assert "version 3" in _texts(tab_b.success)
    assert _references(clinic, analysis_id, clinic.alice) == ["FROM-B", "FROM-A", "TYPO"]


def test_another_practitioner_sees_nothing_to_correct(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "ALICE-ONLY")
    at = open_page("case.py", clinic.bob, {"id": str(analysis_id)})
    assert "not found" in _texts(at.error)
    assert len(at.text_input) == 0 or all(
        not element.key.startswith("reference_text") for element in at.text_input
    )
    with _session(clinic) as session:
        assert clinical.get_analysis(session, analysis_id=analysis_id, owner_id=clinic.alice)


def _in_error(clinic, analysis_id) -> bool:
    with _session(clinic) as session:
        return clinical.is_entered_in_error(session, analysis_id=analysis_id, owner_id=clinic.alice)


def test_marking_entered_in_error_needs_a_reason_and_a_confirmation(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "WRONG-SCAN")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at = at.button(key=f"error_mark_{analysis_id}").click().run()
    assert "Not marked: a reason is required." in _texts(at.error)
    assert not _in_error(clinic, analysis_id)
    at.text_input(key=f"error_reason_{analysis_id}").set_value("Another patient's scan")
    at = at.button(key=f"error_mark_{analysis_id}").click().run()
    assert "This is final" in _texts(at.warning)
    assert not _in_error(clinic, analysis_id)
    # Cancelling marks nothing.
    at = at.button(key=f"error_cancel_{analysis_id}").click().run()
    assert not _in_error(clinic, analysis_id)
    at = at.button(key=f"error_mark_{analysis_id}").click().run()
    at = at.button(key=f"error_confirm_button_{analysis_id}").click().run()
    assert not at.exception
    assert _in_error(clinic, analysis_id)
    banner = _texts(at.error)
    assert "ENTERED IN ERROR" in banner and "Another patient's scan" in banner
    # Closed: no editor for the note or the reference, no marking again, no comparison.
    keys = {element.key for element in at.text_input} | {e.key for e in at.text_area}
    assert f"note_text_{analysis_id}" not in keys
    assert f"reference_text_{analysis_id}" not in keys
    buttons = {element.key for element in at.button}
    assert f"note_save_{analysis_id}" not in buttons and f"error_mark_{analysis_id}" not in buttons
    assert "Read only" in _texts(at.caption)
    assert "Follow-up comparison is not offered" in _texts(at.caption)
    # Still readable by id, and labelled in the picker.
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    assert "ENTERED IN ERROR" in _texts(at.error)
    assert at.selectbox(key="case_select").options[0].endswith("ENTERED IN ERROR")
    activity = open_page("activity.py", clinic.alice)
    labels = _texts(element.proto.label for element in activity.get("page_link"))
    assert f"Marked entered in error: WRONG-SCAN (#{analysis_id})" in labels


def test_the_note_of_an_analysis_entered_in_error_can_be_read_not_edited(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "NOTED")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at.text_area(key=f"note_text_{analysis_id}").set_value("Written before the mark.")
    at = at.button(key=f"note_save_{analysis_id}").click().run()
    at.text_input(key=f"error_reason_{analysis_id}").set_value("Wrong scan")
    at = at.button(key=f"error_mark_{analysis_id}").click().run()
    at = at.button(key=f"error_confirm_button_{analysis_id}").click().run()
    assert "Written before the mark." in " ".join(str(element.value) for element in at.text)


def test_history_leaves_out_analyses_entered_in_error_unless_asked(clinic):
    kept = clinic.add_analysis(clinic.alice, "GOOD-1")
    wrong = clinic.add_analysis(clinic.alice, "BAD-1")
    with _session(clinic) as session:
        mark_entered_in_error(session, analysis_id=wrong, owner_id=clinic.alice, reason="Wrong")
        session.commit()
    at = open_page("history.py", clinic.alice)
    assert not at.exception
    assert list(at.dataframe[0].value["id"]) == [kept]
    at = at.selectbox(key="history_in_error").set_value("shown too").run()
    table = at.dataframe[0].value
    assert set(table["id"]) == {kept, wrong}
    assert dict(zip(table["id"], table["entered_in_error"], strict=True)) == {
        kept: "",
        wrong: "Wrong",
    }
    at = at.selectbox(key="history_in_error").set_value("only those").run()
    assert list(at.dataframe[0].value["id"]) == [wrong]
    # Nor is it offered as a follow-up baseline.
    case = open_page("case.py", clinic.alice, {"id": str(kept)})
    assert "no other analysis to compare" in _texts(case.caption)


def test_a_report_issued_after_the_mark_says_entered_in_error(clinic):
    import io

    from pypdf import PdfReader

    from db import clinical_notes

    analysis_id = clinic.add_analysis(clinic.alice, "REPORTED")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at = at.button(key=f"case_issue_{analysis_id}").click().run()
    at.text_input(key=f"error_reason_{analysis_id}").set_value("Scan of the wrong patient")
    at = at.button(key=f"error_mark_{analysis_id}").click().run()
    at = at.button(key=f"error_confirm_button_{analysis_id}").click().run()
    at = at.button(key=f"case_issue_{analysis_id}").click().run()
    assert not at.exception
    with _session(clinic) as session:
        newest, older = clinical_notes.list_reports(
            session, analysis_id=analysis_id, owner_id=clinic.alice
        )
    text = " ".join(PdfReader(io.BytesIO(newest.pdf)).pages[0].extract_text().split())
    assert "ENTERED IN ERROR" in text and "Scan of the wrong patient" in text
    labels = [element.label for element in at.get("download_button")]
    assert any(f"Report #{older.id}" in label and "issued before" in label for label in labels)


def test_a_click_from_a_session_no_longer_allowed_corrects_and_marks_nothing(clinic):
    # Streamlit runs a button's callback before the page's own check: the callbacks check too.
    from db.models import User

    analysis_id = clinic.add_analysis(clinic.alice, "LATE-CLICK")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at.text_input(key=f"reference_text_{analysis_id}").set_value("CHANGED")
    at.text_input(key=f"error_reason_{analysis_id}").set_value("Wrong scan")
    at = at.button(key=f"error_mark_{analysis_id}").click().run()
    with _session(clinic) as session:
        user = session.get(User, clinic.alice)
        user.status = "disabled"
        session.add(user)
        session.commit()
    # Both clicks reach the server in one run, before the page signs the session out.
    at.button(key=f"reference_save_{analysis_id}").click()
    at = at.button(key=f"error_confirm_button_{analysis_id}").click().run()
    assert not at.exception
    assert "LATE-CLICK" not in _texts(at.subheader)
    assert _references(clinic, analysis_id, clinic.alice) == ["LATE-CLICK"]
    assert not _in_error(clinic, analysis_id)
