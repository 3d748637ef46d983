"""The corrected record in the PDF report: the current case reference, and that (from what,
when) it was corrected; an analysis entered in error, said first and on every page; read
back with pypdf."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from pypdf import PdfReader
from sqlmodel import Session

from brainloc.case_report import Author, issue_case_report, report_filename
from brainloc.casework import load_case
from db.clinical_corrections import correct_case_reference, mark_entered_in_error
from tests.db.clinical_factory import make_analysis, make_user, migrated_engine

ISSUED = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


@pytest.fixture
def engine(empty_database_url):
    engine = migrated_engine(empty_database_url)
    yield engine
    engine.dispose()


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def _issue(session, owner, analysis_id):
    author = Author(owner.id, owner.full_name, "Radiologist", "General Hospital")
    return issue_case_report(session, author=author, analysis_id=analysis_id, issued_at=ISSUED)


def test_a_report_names_the_current_reference_and_says_from_what_and_when_it_was_corrected(
    engine,
):
    with Session(engine, expire_on_commit=False) as session:
        owner = make_user(session, "alice")
        analysis_id = make_analysis(session, owner.id, reference="CAES-17").id
        before = _issue(session, owner, analysis_id)
        first = correct_case_reference(
            session, analysis_id=analysis_id, owner_id=owner.id, reference="CASE-17",
            base_version=1,
        )  # fmt: skip
        second = correct_case_reference(
            session, analysis_id=analysis_id, owner_id=owner.id, reference="CASE-18",
            base_version=2,
        )  # fmt: skip
        after = _issue(session, owner, analysis_id)
        case = load_case(session, owner_id=owner.id, analysis_id=analysis_id)
        session.commit()
    text = _text(after.pdf)
    assert "Case reference CASE-18" in text
    assert "Reference corrected" in text
    assert f"{second.created_at:%Y-%m-%d %H:%M} UTC, from “CASE-17”" in text
    assert f"{first.created_at:%Y-%m-%d %H:%M} UTC, from “CAES-17”" in text
    # Newest correction first.
    assert text.index("from “CASE-17”") < text.index("from “CAES-17”")
    assert after.filename == report_filename(case, ISSUED) and "CASE-18" in after.filename
    # A report issued before the correction keeps its bytes and says nothing of it.
    assert "Reference corrected" not in _text(before.pdf)
    assert "CAES-17" in _text(before.pdf)


def test_a_report_of_a_reference_never_corrected_has_no_correction_line(engine):
    with Session(engine, expire_on_commit=False) as session:
        owner = make_user(session, "alice")
        analysis_id = make_analysis(session, owner.id, reference="CASE-1").id
        report = _issue(session, owner, analysis_id)
        session.commit()
    assert "corrected" not in _text(report.pdf)


def test_a_report_of_an_analysis_entered_in_error_says_so_first_and_on_every_page(engine):
    with Session(engine, expire_on_commit=False) as session:
        owner = make_user(session, "alice")
        # Many tumor slices make a report of more than one page.
        analysis_id = make_analysis(session, owner.id, probabilities=(0.9,) * 60).id
        before = _issue(session, owner, analysis_id)
        marked = mark_entered_in_error(
            session, analysis_id=analysis_id, owner_id=owner.id, reason="Wrong patient's scan"
        )
        after = _issue(session, owner, analysis_id)
        session.commit()
    reader = PdfReader(io.BytesIO(after.pdf))
    assert len(reader.pages) > 1
    pages = [" ".join(page.extract_text().split()) for page in reader.pages]
    assert all("ENTERED IN ERROR" in page for page in pages)
    first = pages[0]
    # Above the result, with when and why.
    assert first.index("ENTERED IN ERROR") < first.index("Result")
    assert f"marked entered in error on {marked:%Y-%m-%d %H:%M} UTC" in first
    assert "Reason: Wrong patient's scan. It is kept as a record only" in first
    assert reader.metadata.title.startswith("ENTERED IN ERROR - ")
    # The report issued before the mark keeps its bytes.
    assert "ENTERED IN ERROR" not in _text(before.pdf)
