"""AppTest of correcting the record on the Case page: the case reference corrected (kept,
audited, shown, searchable, stale tabs refused), and what the History and Activity pages
make of it."""

from __future__ import annotations

import re

from sqlmodel import Session

from db import clinical, clinical_activity
from db.audit import Action
from db.clinical_corrections import reference_history
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
