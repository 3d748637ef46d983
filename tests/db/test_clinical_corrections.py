"""Correcting the record: a case reference corrected by its owner only, every earlier one
kept, a stale correction refused, bad input saving nothing; an analysis marked entered in
error by its owner only, kept but closed and set apart; the upgrades of older databases."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from sqlalchemy import text
from sqlmodel import Session

from db import audit, clinical, clinical_activity
from db.clinical_corrections import (
    NotFoundError,
    StaleReferenceError,
    correct_case_reference,
    mark_entered_in_error,
    reference_history,
)
from db.clinical_notes import add_note_version, latest_note
from db.engine import make_engine
from db.migrate import alembic_config, upgrade_head
from tests.db.clinical_factory import make_analysis, make_user, migrated_engine


@pytest.fixture
def case(empty_database_url):
    engine = migrated_engine(empty_database_url)
    with Session(engine, expire_on_commit=False) as session:
        alice, bob = make_user(session, "alice"), make_user(session, "bob")
        analysis = make_analysis(session, alice.id, reference="CAES-17")
        session.commit()
        yield engine, alice.id, bob.id, analysis.id
    engine.dispose()


def _reference(engine, analysis_id: int, owner_id: int) -> str:
    with Session(engine) as session:
        return clinical.get_analysis(
            session, analysis_id=analysis_id, owner_id=owner_id
        ).case_reference


def _events(engine, action: str) -> list:
    with Session(engine) as session:
        return audit.list_events(session, actions=[action])


def test_the_upload_reference_is_version_one(case):
    engine, alice, _, analysis = case
    with Session(engine) as session:
        history = reference_history(session, analysis_id=analysis, owner_id=alice)
    assert [(v.version, v.reference, v.author_id) for v in history] == [(1, "CAES-17", alice)]


def test_a_correction_becomes_current_keeps_the_earlier_one_and_is_audited(case):
    engine, alice, _, analysis = case
    with Session(engine) as session:
        saved = correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference="  CASE-17 ", base_version=1
        )
        session.commit()
    assert (saved.version, saved.reference) == (2, "CASE-17")
    assert _reference(engine, analysis, alice) == "CASE-17"
    with Session(engine) as session:
        history = reference_history(session, analysis_id=analysis, owner_id=alice)
        # History searches the current reference, not the typo it replaced.
        found = clinical.list_analyses(session, owner_id=alice, text="case-17")
        typo = clinical.list_analyses(session, owner_id=alice, text="CAES")
        activity = clinical_activity.recent_activity(session, owner_id=alice)
    assert [(v.version, v.reference) for v in history] == [(2, "CASE-17"), (1, "CAES-17")]
    assert history[0].created_at >= history[1].created_at
    assert [a.id for a in found] == [analysis] and typo == []
    (event,) = _events(engine, audit.Action.REFERENCE_CORRECTED)
    assert (event.actor_id, event.target_id, event.detail) == (alice, analysis, {"version": 2})
    # The audit log, which administrators read, never holds the references themselves.
    assert "CAES" not in str(event.detail) and "CASE" not in str(event.detail)
    corrected = [item for item in activity if item.action == audit.Action.REFERENCE_CORRECTED]
    assert [(item.analysis_id, item.case_reference) for item in corrected] == [
        (analysis, "CASE-17")
    ]


@pytest.mark.parametrize(
    ("reference", "message"),
    [("", "required"), ("   \n ", "required"), ("x" * 201, "longer than 200")],
)
def test_a_bad_reference_is_refused_with_a_message_and_nothing_saved(case, reference, message):
    engine, alice, _, analysis = case
    with pytest.raises(ValueError, match=message), Session(engine) as session:
        correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference=reference, base_version=1
        )
    assert _reference(engine, analysis, alice) == "CAES-17"
    with Session(engine) as session:
        assert len(reference_history(session, analysis_id=analysis, owner_id=alice)) == 1
    assert _events(engine, audit.Action.REFERENCE_CORRECTED) == []


def test_two_hundred_characters_are_accepted(case):
    engine, alice, _, analysis = case
    with Session(engine) as session:
        saved = correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference="R" * 200, base_version=1
        )
        session.commit()
    assert saved.reference == "R" * 200 == _reference(engine, analysis, alice)


def test_an_unchanged_reference_saves_nothing(case):
    engine, alice, _, analysis = case
    with Session(engine) as session:
        same = correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference="CAES-17 ", base_version=1
        )
        session.commit()
    assert same.version == 1
    assert _events(engine, audit.Action.REFERENCE_CORRECTED) == []


def test_a_correction_from_a_stale_tab_is_refused_not_lost(case):
    engine, alice, _, analysis = case
    # Two tabs opened the case at version 1; tab A saves first.
    with Session(engine) as session:
        correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference="CASE-17", base_version=1
        )
        session.commit()
    with pytest.raises(StaleReferenceError) as refused, Session(engine) as session:
        correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference="CASE-71", base_version=1
        )
    assert (refused.value.current.version, refused.value.current.reference) == (2, "CASE-17")
    assert "not saved" in str(refused.value)
    assert _reference(engine, analysis, alice) == "CASE-17"
    # Having seen version 2, tab B saves over it: both stay on record.
    with Session(engine) as session:
        correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference="CASE-71", base_version=2
        )
        session.commit()
        history = reference_history(session, analysis_id=analysis, owner_id=alice)
    assert [v.reference for v in history] == ["CASE-71", "CASE-17", "CAES-17"]


def test_another_practitioner_can_neither_correct_nor_read_the_references(case):
    engine, alice, bob, analysis = case
    with pytest.raises(NotFoundError), Session(engine) as session:
        correct_case_reference(
            session, analysis_id=analysis, owner_id=bob, reference="STOLEN", base_version=1
        )
    with Session(engine) as session:
        assert reference_history(session, analysis_id=analysis, owner_id=bob) == []
        assert len(reference_history(session, analysis_id=analysis, owner_id=alice)) == 1
    assert _reference(engine, analysis, alice) == "CAES-17"
    assert _events(engine, audit.Action.REFERENCE_CORRECTED) == []


def test_an_unknown_analysis_is_not_found(case):
    engine, alice, _, _ = case
    with pytest.raises(NotFoundError), Session(engine) as session:
        correct_case_reference(
            session, analysis_id=99_999, owner_id=alice, reference="X", base_version=1
        )


def test_upgrading_gives_existing_analyses_their_reference_as_version_one(empty_database_url):
    url = empty_database_url
    command.upgrade(alembic_config(url), "0008")
    engine = make_engine(url)
    stamp = "'2026-01-01 00:00:00.000000'"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, full_name, email, password_hash, role, status, "
                "licence_number, institution, created_at, updated_at, must_change_password) "
                f"VALUES ('old', 'Dr Old', 'old@clinic.example', 'x', 'practitioner', "
                f"'approved', 'R-1', 'H', {stamp}, {stamp}, :no)"
            ),
            {"no": False},
        )
        for reference in ("OLD-1", "OLD-2"):
            connection.execute(
                text(
                    "INSERT INTO analyses (owner_id, case_reference, created_at, source_name, "
                    "source_format, slice_count, classifier_name, classifier_version, "
                    "segmenter_name, segmenter_version, decision_threshold, tumor_probability, "
                    "has_tumor, findings, arithmetic) VALUES (1, :reference, "
                    f"{stamp}, 'a.tif', 'tiff', 0, 'c', '1', 's', '1', 0.5, 0.1, :no, '{{}}', "
                    "'float32')"
                ),
                {"no": False, "reference": reference},
            )
    upgrade_head(url)
    with Session(engine) as session:
        first = reference_history(session, analysis_id=1, owner_id=1)
        second = reference_history(session, analysis_id=2, owner_id=1)
        assert [(v.version, v.reference, v.author_id) for v in first] == [(1, "OLD-1", 1)]
        assert [v.reference for v in second] == ["OLD-2"]
        assert first[0].created_at.year == 2026 and first[0].created_at.tzinfo is not None
        correct_case_reference(
            session, analysis_id=1, owner_id=1, reference="NEW-1", base_version=1
        )
        session.commit()
        assert clinical.get_analysis(session, analysis_id=1, owner_id=1).case_reference == "NEW-1"
    engine.dispose()


def _mark(engine, analysis_id, owner_id, reason="Another patient's scan."):
    with Session(engine) as session:
        marked = mark_entered_in_error(
            session, analysis_id=analysis_id, owner_id=owner_id, reason=reason
        )
        session.commit()
    return marked


def test_an_analysis_entered_in_error_is_kept_closed_and_set_apart(case):
    engine, alice, _, analysis = case
    with Session(engine) as session:
        other = make_analysis(session, alice, reference="CASE-2").id
        session.commit()
    marked = _mark(engine, analysis, alice, reason="  Another patient's scan.  ")
    with Session(engine) as session:
        kept = clinical.get_analysis(session, analysis_id=analysis, owner_id=alice)
        assert kept.entered_in_error_at == marked
        assert kept.entered_in_error_reason == "Another patient's scan."
        assert len(clinical.get_slices(session, analysis_id=analysis, owner_id=alice)) == 1
        assert clinical.is_entered_in_error(session, analysis_id=analysis, owner_id=alice)
        # Left out by default (History, follow-up candidates), listed when asked for.
        assert [a.id for a in clinical.list_analyses(session, owner_id=alice)] == [other]
        assert [
            a.id for a in clinical.list_analyses(session, owner_id=alice, entered_in_error=True)
        ] == [analysis]
        assert {
            a.id for a in clinical.list_analyses(session, owner_id=alice, entered_in_error=None)
        } == {analysis, other}
        activity = clinical_activity.recent_activity(session, owner_id=alice)
    (event,) = _events(engine, audit.Action.ENTERED_IN_ERROR)
    assert (event.actor_id, event.target_id) == (alice, analysis)
    # The reason may name the patient: it stays out of the log administrators read.
    assert "patient" not in str(event.detail)
    assert audit.Action.ENTERED_IN_ERROR in [item.action for item in activity]


def test_the_mark_is_final_and_closes_the_note_and_the_reference(case):
    from db.clinical_notes import add_note_version, latest_note

    engine, alice, _, analysis = case
    with Session(engine) as session:
        add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="Read before.", base_version=None
        )
        session.commit()
    marked = _mark(engine, analysis, alice)
    with pytest.raises(ValueError, match="already"), Session(engine) as session:
        mark_entered_in_error(session, analysis_id=analysis, owner_id=alice, reason="Again.")
    with pytest.raises(ValueError, match="record is closed"), Session(engine) as session:
        add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="Added after.", base_version=1
        )
    with pytest.raises(ValueError, match="record is closed"), Session(engine) as session:
        correct_case_reference(
            session, analysis_id=analysis, owner_id=alice, reference="NEW", base_version=1
        )
    with Session(engine) as session:
        assert latest_note(session, analysis_id=analysis, owner_id=alice).body == "Read before."
        kept = clinical.get_analysis(session, analysis_id=analysis, owner_id=alice)
        assert (kept.case_reference, kept.entered_in_error_at) == ("CAES-17", marked)
    assert len(_events(engine, audit.Action.ENTERED_IN_ERROR)) == 1


@pytest.mark.parametrize(
    ("reason", "message"),
    [("", "reason is required"), ("  \t", "reason is required"), ("x" * 301, "longer than 300")],
)
def test_marking_without_a_fit_reason_is_refused_and_saves_nothing(case, reason, message):
    engine, alice, _, analysis = case
    with pytest.raises(ValueError, match=message), Session(engine) as session:
        mark_entered_in_error(session, analysis_id=analysis, owner_id=alice, reason=reason)
    with Session(engine) as session:
        assert not clinical.is_entered_in_error(session, analysis_id=analysis, owner_id=alice)
    assert _events(engine, audit.Action.ENTERED_IN_ERROR) == []


def test_another_practitioner_cannot_mark_someone_elses_analysis(case):
    engine, alice, bob, analysis = case
    with pytest.raises(NotFoundError), Session(engine) as session:
        mark_entered_in_error(session, analysis_id=analysis, owner_id=bob, reason="Not mine.")
    with Session(engine) as session:
        assert not clinical.is_entered_in_error(session, analysis_id=analysis, owner_id=alice)
        assert not clinical.is_entered_in_error(session, analysis_id=analysis, owner_id=bob)
        assert clinical.list_analyses(session, owner_id=bob, entered_in_error=None) == []
    assert _events(engine, audit.Action.ENTERED_IN_ERROR) == []


def test_an_analysis_entered_in_error_is_no_follow_up_baseline_nor_follow_up(case):
    from brainloc.followup import compare_own

    engine, alice, _, analysis = case
    with Session(engine) as session:
        other = make_analysis(session, alice, reference="CASE-2").id
        session.commit()
        assert compare_own(session, owner_id=alice, analysis_id=other, baseline_id=analysis)
    _mark(engine, analysis, alice)
    with Session(engine) as session:
        assert compare_own(session, owner_id=alice, analysis_id=other, baseline_id=analysis) is None
        assert compare_own(session, owner_id=alice, analysis_id=analysis, baseline_id=other) is None


def test_upgrading_leaves_existing_analyses_unmarked(empty_database_url):
    url = empty_database_url
    command.upgrade(alembic_config(url), "0009")
    engine = make_engine(url)
    with Session(engine) as session:
        alice = make_user(session, "alice")
        session.commit()
        alice_id = alice.id
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO analyses (owner_id, case_reference, created_at, source_name, "
                "source_format, slice_count, classifier_name, classifier_version, "
                "segmenter_name, segmenter_version, decision_threshold, tumor_probability, "
                "has_tumor, findings, arithmetic) VALUES (:owner, 'OLD-1', "
                "'2026-01-01 00:00:00.000000', 'a.tif', 'tiff', 0, 'c', '1', 's', '1', 0.5, "
                "0.1, :no, '{}', 'float32')"
            ),
            {"no": False, "owner": alice_id},
        )
    upgrade_head(url)
    with Session(engine) as session:
        (old,) = clinical.list_analyses(session, owner_id=alice_id)
        assert (old.entered_in_error_at, old.entered_in_error_reason) == (None, "")
        mark_entered_in_error(session, analysis_id=old.id, owner_id=alice_id, reason="Wrong scan.")
        session.commit()
        assert clinical.list_analyses(session, owner_id=alice_id) == []
    engine.dispose()


@pytest.mark.parametrize("change", ["note", "reference"])
def test_a_change_made_while_the_analysis_is_being_marked_waits_and_is_refused(case, change):
    """A note or a correction saved while another tab's mark is not committed yet: it waits
    for the mark (it used to check "not marked" at once and save after the mark, on
    PostgreSQL; on SQLite its stale read could not become a write), and is refused."""
    engine, alice, _, analysis = case
    outcome: list = []

    def save() -> None:
        with Session(engine) as session:
            try:
                if change == "note":
                    add_note_version(
                        session, analysis_id=analysis, owner_id=alice, body="x", base_version=None
                    )
                else:
                    correct_case_reference(
                        session, analysis_id=analysis, owner_id=alice, reference="X",
                        base_version=1,
                    )  # fmt: skip
                session.commit()
                outcome.append("saved")
            except Exception as error:  # noqa: BLE001 - the test reports what happened
                outcome.append(error)

    with Session(engine) as marking:
        mark_entered_in_error(marking, analysis_id=analysis, owner_id=alice, reason="wrong scan")
        worker = threading.Thread(target=save)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and outcome == []  # waiting for the mark's transaction
        marking.commit()
    worker.join(timeout=30)
    (result,) = outcome
    assert isinstance(result, ValueError) and str(result) == clinical.RECORD_CLOSED
    with Session(engine) as session:
        assert (
            clinical.get_analysis(session, analysis_id=analysis, owner_id=alice).case_reference
            == "CAES-17"
        )
        assert latest_note(session, analysis_id=analysis, owner_id=alice) is None
