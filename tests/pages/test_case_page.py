"""AppTest of the case page: reopen own cases only, versioned notes with stale-save refusal,
downloads and issued reports, every action audited."""

from __future__ import annotations

import io
import re
import time

import pytest
from pypdf import PdfReader
from sqlmodel import Session

from db import clinical_activity, clinical_notes
from db.audit import Action
from db.engine import get_engine
from tests.pages.workflow_fixtures import *  # noqa: F403 - fixtures
from tests.pages.workflow_fixtures import open_page


def _session(clinic):
    return Session(get_engine(clinic.settings.database_url), expire_on_commit=False)


def _actions(clinic, owner_id):
    with _session(clinic) as session:
        return [
            item.action for item in clinical_activity.recent_activity(session, owner_id=owner_id)
        ]


def _texts(elements) -> str:
    """The elements' text as shown: Markdown escapes (text users wrote, ui.markdown) undone."""
    return re.sub(r"\\(.)", r"\1", " | ".join(str(element.value) for element in elements))


def test_an_own_case_reopens_by_id_and_the_view_is_audited_once(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "CASE-R1")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    assert not at.exception
    assert "CASE-R1" in _texts(at.subheader)
    assert len(at.get("image")) == 2
    assert at.selectbox(key="case_select").value == analysis_id
    at = at.run()
    at = at.slider(key=f"case_{analysis_id}_opacity").set_value(0.8).run()
    assert _actions(clinic, clinic.alice).count(Action.VIEW) == 1
    # Leaving for another page and coming back is a new view.
    at = at.switch_page("pages/history.py").run()
    at.query_params["id"] = str(analysis_id)
    at = at.switch_page("pages/case.py").run()
    assert not at.exception
    assert "CASE-R1" in _texts(at.subheader)
    assert _actions(clinic, clinic.alice).count(Action.VIEW) == 2


def test_a_case_reference_is_shown_as_written_not_as_markdown(clinic):
    from ui.markdown import escape_markdown

    reference = "# BIG ![x](https://tracker.example/x.png) [site](https://example.org)"
    analysis_id = clinic.add_analysis(clinic.alice, reference)
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    assert at.subheader[0].value == escape_markdown(reference)
    assert _texts(at.subheader[:1]) == reference


def test_the_picker_shows_the_case_the_address_opened_also_by_default(clinic):
    # The browser shows the picker's default option until a run's value reaches it; after a
    # page load, a rerun can overtake the run that set the value. The default was then the
    # newest case while the page showed the requested one, and the next click (saving a note)
    # sent the newest case back and opened it.
    older = clinic.add_analysis(clinic.alice, "OLDER")
    clinic.add_analysis(clinic.alice, "NEWEST")
    at = open_page("case.py", clinic.alice, {"id": str(older)}).run()
    picker = at.selectbox(key="case_select")
    assert picker.value == older
    assert picker.options[picker.proto.default].startswith(f"OLDER · #{older}")


def test_another_practitioner_gets_not_found_by_id_and_nothing_in_the_picker(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "SECRET-CASE")
    at = open_page("case.py", clinic.bob, {"id": str(analysis_id)})
    assert not at.exception
    assert "not found" in _texts(at.error)
    assert len(at.get("image")) == 0 and len(at.text_area) == 0
    assert "SECRET-CASE" not in str(at._tree)
    assert _actions(clinic, clinic.bob) == []
    at = open_page("case.py", clinic.bob)
    assert "no analyses yet" in _texts(at.info)


@pytest.mark.parametrize("raw", ["99999999999999999999", "-3", "0", "12abc"])
def test_an_impossible_id_in_the_address_is_not_found(clinic, raw):
    clinic.add_analysis(clinic.alice, "ANY")
    at = open_page("case.py", clinic.alice, {"id": raw})
    assert not at.exception
    assert "not found" in _texts(at.error)


def test_picking_a_case_opens_it_and_sets_the_address(clinic):
    first = clinic.add_analysis(clinic.alice, "FIRST")
    second = clinic.add_analysis(clinic.alice, "SECOND")
    at = open_page("case.py", clinic.alice)
    options = at.selectbox(key="case_select").options
    assert [o.split(" · ")[:2] for o in options] == [
        ["SECOND", f"#{second}"],
        ["FIRST", f"#{first}"],
    ]
    assert at.selectbox(key="case_select").value is None
    at = at.selectbox(key="case_select").set_value(second).run()
    assert not at.exception
    assert "SECOND" in _texts(at.subheader)
    assert str(second) in str(at.query_params["id"])


def test_notes_are_versioned_and_the_history_is_visible(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "NOTES")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    text = f"note_text_{analysis_id}"
    at.text_area(key=text).set_value("Left frontal lesion.")
    at = at.button(key=f"note_save_{analysis_id}").click().run()
    assert "version 1" in _texts(at.success)
    at.text_area(key=text).set_value("Left frontal lesion, 2 cm, enhancing.")
    at = at.button(key=f"note_save_{analysis_id}").click().run()
    assert "version 2" in _texts(at.success)
    assert not at.exception
    history = _texts(at.text)
    assert "Left frontal lesion." in history and "2 cm, enhancing." in history
    with _session(clinic) as session:
        versions = clinical_notes.note_history(
            session, analysis_id=analysis_id, owner_id=clinic.alice
        )
    assert [v.version for v in versions] == [2, 1]
    assert _actions(clinic, clinic.alice).count(Action.NOTE_EDIT) == 2


def test_a_second_tab_cannot_silently_overwrite_the_first(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "TABS")
    text, save = f"note_text_{analysis_id}", f"note_save_{analysis_id}"
    tab_a = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    tab_b = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    tab_a.text_area(key=text).set_value("Written in tab A.")
    tab_a = tab_a.button(key=save).click().run()
    tab_b.text_area(key=text).set_value("Written in tab B.")
    tab_b = tab_b.button(key=save).click().run()
    assert not tab_b.exception
    assert "not saved" in _texts(tab_b.error)
    assert "Written in tab A." in _texts(tab_b.code)
    assert tab_b.text_area(key=text).value == "Written in tab B."
    with _session(clinic) as session:
        latest = clinical_notes.latest_note(session, analysis_id=analysis_id, owner_id=clinic.alice)
    assert latest.body == "Written in tab A."
    # Having seen version 1, the user keeps their text: it becomes version 2, A's stays in history.
    tab_b = tab_b.button(key=f"note_keep_{analysis_id}").click().run()
    tab_b = tab_b.button(key=save).click().run()
    assert "version 2" in _texts(tab_b.success)
    with _session(clinic) as session:
        bodies = [
            v.body
            for v in clinical_notes.note_history(
                session, analysis_id=analysis_id, owner_id=clinic.alice
            )
        ]
    assert bodies == ["Written in tab B.", "Written in tab A."]


def test_issued_reports_are_listed_and_keep_their_bytes(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "REPORTS")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    assert not at.warning
    at = at.text_area(key=f"note_text_{analysis_id}").set_value("Not saved yet.").run()
    assert "unsaved changes" in _texts(at.warning)
    at = at.button(key=f"note_save_{analysis_id}").click().run()
    assert not at.warning
    at = at.button(key=f"case_issue_{analysis_id}").click().run()
    at = at.button(key=f"case_issue_{analysis_id}").click().run()
    assert not at.exception
    with _session(clinic) as session:
        reports = clinical_notes.list_reports(
            session, analysis_id=analysis_id, owner_id=clinic.alice
        )
    assert len(reports) == 2
    keys = {f"case_report_dl_{r.id}" for r in reports}
    assert keys <= {button.key for button in at.get("download_button")}
    at = at.get("download_button")[-1].click().run()
    assert not at.exception
    with _session(clinic) as session:
        again = clinical_notes.get_report(session, report_id=reports[-1].id, owner_id=clinic.alice)
    assert again.pdf == reports[-1].pdf
    actions = _actions(clinic, clinic.alice)
    assert actions.count(Action.REPORT_ISSUE) == 2


def test_downloads_are_audited(clinic, monkeypatch):
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored_names = []  # the download file names, on their way into Streamlit's media storage
    store = MemoryMediaFileStorage.load_and_get_id

    def recorded(self, path_or_data, mimetype, kind, filename=None):
        stored_names.append(filename)
        return store(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recorded)
    analysis_id = clinic.add_analysis(clinic.alice, "DOWNLOADS")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    buttons = {button.key: button for button in at.get("download_button")}
    at = buttons[f"case_dl_mask_{analysis_id}"].click().run()
    assert not at.exception
    buttons = {button.key: button for button in at.get("download_button")}
    at = buttons[f"case_dl_overlay_{analysis_id}"].click().run()
    # The case as NIfTI: preparing it is the download (its address is in the browser then).
    at = at.button(key="case_nifti_prepare").click().run()
    assert not at.exception

    def downloaded() -> list[str]:
        with _session(clinic) as session:
            items = clinical_activity.recent_activity(session, owner_id=clinic.alice)
        return sorted(i.detail.get("what") for i in items if i.action == Action.DOWNLOAD)

    assert downloaded() == ["mask_png", "nifti_zip", "overlay_png"]
    # The files and the log count slices from 1, as the page does ("Findings, slice 1").
    names = {name for name in stored_names if (name or "").startswith(f"case{analysis_id}_s")}
    assert names == {f"case{analysis_id}_slice1_mask.png", f"case{analysis_id}_slice1_overlay.png"}
    with _session(clinic) as session:
        items = clinical_activity.recent_activity(session, owner_id=clinic.alice)
    pictures = [i for i in items if i.detail.get("what") in ("mask_png", "overlay_png")]
    assert {i.detail.get("slice_number") for i in pictures} == {1}
    buttons = {button.key: button for button in at.get("download_button")}
    at = buttons["case_nifti_download"].click().run()
    assert not at.exception
    assert downloaded() == ["mask_png", "nifti_zip", "overlay_png"]


def test_an_administrator_cannot_open_a_case_even_by_the_page_file(clinic, make_account):
    from streamlit.testing.v1 import AppTest

    from tests.pages.workflow_fixtures import REPO_ROOT
    from ui.state import USER_ID_KEY

    analysis_id = clinic.add_analysis(clinic.alice, "ADMIN-NO")
    admin = make_account("root", role="admin")
    for page in ("case.py", "history.py", "activity.py", "analyze.py"):
        at = AppTest.from_file(str(REPO_ROOT / "pages" / page), default_timeout=60)
        at.session_state[USER_ID_KEY] = admin.id
        at.query_params["id"] = str(analysis_id)
        at.run()
        assert not at.exception
        assert [e.value for e in at.error] == ["You do not have access to this page."]
        assert "ADMIN-NO" not in str(at._tree) and len(at.get("image")) == 0


def _dicom_analysis(clinic, owner_id: int, reference: str, side: int, day: str) -> int:
    """A one-slice DICOM analysis (0.5 mm pixels, StudyDate ``day``) whose bright square is
    ``side`` px wide."""
    from brainloc.casework import analyze_uploads, save_outcome
    from brainloc.inference import get_pipeline
    from tests.brainloc.scan_factory import encode_dicom, tumor_like_slice

    pixels = tumor_like_slice((96, 96), square=(30, 20, side))[..., 1].astype("uint16") * 16
    pipeline = get_pipeline(clinic.settings.models_dir)
    dicom = encode_dicom(pixels, spacing=(0.5, 0.5), study_date=day)
    outcome = analyze_uploads(pipeline, [("im.dcm", dicom)])
    with _session(clinic) as session:
        analysis_id = save_outcome(
            session, owner_id=owner_id, case_reference=reference, outcome=outcome
        )
        session.commit()
    return analysis_id


def test_a_case_is_compared_with_an_earlier_own_analysis_in_millimetres(clinic):
    baseline = _dicom_analysis(clinic, clinic.alice, "PATIENT-7 2025", 20, "20250314")
    follow_up = _dicom_analysis(clinic, clinic.alice, "PATIENT-7 2026", 26, "20250910")
    bob_case = clinic.add_analysis(clinic.bob, "BOB-ONLY")
    at = open_page("case.py", clinic.alice, {"id": str(follow_up)})
    assert not at.exception
    assert "scan of 2025-09-10" in _texts(at.caption)
    picker = at.selectbox(key=f"followup_baseline_{follow_up}")
    # Only the user's own other analyses are offered.
    assert len(picker.options) == 1
    assert picker.options[0].startswith(f"PATIENT-7 2025 · #{baseline} · ")
    assert f"#{bob_case} " not in str(at._tree) and "BOB-ONLY" not in str(at._tree)
    at = picker.set_value(baseline).run()
    assert not at.exception
    table = at.table[-1].value
    section = table[table["Measure"] == "Largest cross-section (longest × perpendicular)"]
    assert section.iloc[0, 1].endswith(" mm (slice 1)")
    assert section.iloc[0, 2].endswith(" mm (slice 1)")
    dates = table[table["Measure"] == "Scan date"]
    assert dates.iloc[0, 1:].tolist() == ["2025-03-14", "2025-09-10", "+180 days"]
    # The square grew from 20 to 26 px a side: its product grew by about (26/20)^2 - 1 = 69 %.
    change = int(section["Change"].iloc[0].rstrip("%"))
    assert 50 <= change <= 90
    captions = _texts(at.caption)
    assert "RANO size thresholds" in captions and "not a response assessment" in captions
    # Looking at the baseline is audited as a view of it, once.
    at = at.run()
    with _session(clinic) as session:
        events = clinical_activity.recent_activity(session, owner_id=clinic.alice)
    baseline_views = [e for e in events if e.action == Action.VIEW and e.analysis_id == baseline]
    assert len(baseline_views) == 1
    # A report issued now is a follow-up report: it holds the same comparison.
    assert f"comparison with analysis #{baseline}" in _texts(at.caption)
    at = at.button(key=f"case_issue_{follow_up}").click().run()
    assert not at.exception
    with _session(clinic) as session:
        (report,) = clinical_notes.list_reports(
            session, analysis_id=follow_up, owner_id=clinic.alice
        )
    pages = PdfReader(io.BytesIO(report.pdf)).pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())
    assert "Compared with an earlier scan" in text
    assert f"Baseline: analysis #{baseline}, PATIENT-7 2025" in text
    assert f"+{change}%" in text and "not a response assessment" in text
    assert "Scan date 2025-09-10" in text and "+180 days" in text


def test_the_comparison_offers_nothing_without_another_own_analysis(clinic):
    clinic.add_analysis(clinic.alice, "ALICE-1")
    only = clinic.add_analysis(clinic.bob, "BOB-1")
    at = open_page("case.py", clinic.bob, {"id": str(only)})
    assert not at.exception
    assert "no other analysis" in _texts(at.caption)
    assert "ALICE-1" not in str(at._tree)


def test_the_note_survives_leaving_the_case_saved_or_not(clinic):
    # Streamlit forgets a widget's text when the page is left; the editor must not come back
    # empty (a save would then store an empty note as the current version).
    analysis_id = clinic.add_analysis(clinic.alice, "NOTE-BACK")
    text, save = f"note_text_{analysis_id}", f"note_save_{analysis_id}"
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at.text_area(key=text).set_value("Important finding.")
    at = at.button(key=save).click().run()

    def away_and_back(at):
        at = at.switch_page("pages/history.py").run()
        at.query_params["id"] = str(analysis_id)
        return at.switch_page("pages/case.py").run()

    at = away_and_back(at)
    assert not at.exception
    assert at.text_area(key=text).value == "Important finding."
    assert "unsaved changes" not in _texts(at.warning)
    # Unsaved typing comes back too, still based on version 1.
    at = at.text_area(key=text).set_value("Important finding. Review in 3 months.").run()
    at = away_and_back(at)
    assert at.text_area(key=text).value == "Important finding. Review in 3 months."
    assert "Editing from version 1" in _texts(at.caption)
    at = at.button(key=save).click().run()
    with _session(clinic) as session:
        versions = clinical_notes.note_history(
            session, analysis_id=analysis_id, owner_id=clinic.alice
        )
    assert [(v.version, v.body) for v in versions] == [
        (2, "Important finding. Review in 3 months."),
        (1, "Important finding."),
    ]


def _set_status(clinic, user_id: int, status: str) -> None:
    from db.models import User

    with _session(clinic) as session:
        user = session.get(User, user_id)
        user.status = status
        session.add(user)
        session.commit()


def _notes_and_reports(clinic, analysis_id: int) -> tuple[int, int]:
    with _session(clinic) as session:
        notes = clinical_notes.note_history(session, analysis_id=analysis_id, owner_id=clinic.alice)
        reports = clinical_notes.list_reports(
            session, analysis_id=analysis_id, owner_id=clinic.alice
        )
    return len(notes), len(reports)


@pytest.mark.parametrize("button", ["note_save", "case_issue"])
@pytest.mark.parametrize("why", ["disabled", "sessions ended", "idle"])
def test_a_click_of_a_session_no_longer_allowed_saves_nothing(clinic, why, button):
    # Streamlit runs a button's callback before the page's own check: the callback checks too.
    from brainloc.account_security import end_other_sessions
    from ui.idle import LAST_ACTIVITY_KEY

    analysis_id = clinic.add_analysis(clinic.alice, "LATE-CLICK")
    at = open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at.text_area(key=f"note_text_{analysis_id}").set_value("Typed before the change.")
    if why == "disabled":
        _set_status(clinic, clinic.alice, "disabled")
    elif why == "sessions ended":
        with _session(clinic) as session:
            end_other_sessions(session, user_id=clinic.alice)  # from another browser
            session.commit()
    else:
        at.session_state[LAST_ACTIVITY_KEY] = 0.0  # idle since 1970
    at = at.button(key=f"{button}_{analysis_id}").click().run()
    assert not at.exception
    assert _notes_and_reports(clinic, analysis_id) == (0, 0)
    if why != "idle":  # (app.py, which signs an idle session out, does not run here)
        assert "LATE-CLICK" not in _texts(at.subheader)
    else:
        # Still within the limit, the same click saves.
        at.session_state[LAST_ACTIVITY_KEY] = time.time()
        at = at.button(key=f"{button}_{analysis_id}").click().run()
        assert _notes_and_reports(clinic, analysis_id) == (
            (1, 0) if button == "note_save" else (0, 1)
        )
