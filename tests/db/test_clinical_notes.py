"""Versioned notes (stale saves refused, never lost) and issued reports (same bytes later)."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from db import clinical_activity
from db.audit import Action
from db.clinical_notes import (
    NotFoundError,
    StaleNoteError,
    add_note_version,
    get_report,
    issue_report,
    latest_note,
    latest_notes,
    list_reports,
    note_history,
)
from tests.db.clinical_factory import make_analysis, make_user, migrated_engine

PDF = b"%PDF-1.4 fake but starts right\n%%EOF"


@pytest.fixture
def case(empty_database_url):
    engine = migrated_engine(empty_database_url)
    with Session(engine, expire_on_commit=False) as session:
        alice, bob = make_user(session, "alice"), make_user(session, "bob")
        analysis = make_analysis(session, alice.id)
        session.commit()
        return engine, alice.id, bob.id, analysis.id


def test_every_edit_is_a_new_version_with_history(case):
    engine, alice, _, analysis = case
    with Session(engine, expire_on_commit=False) as session:
        first = add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="Lesion left.", base_version=None
        )
        second = add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="Lesion left, 2 cm.", base_version=1
        )
        session.commit()
        assert (first.version, second.version) == (1, 2)
        assert second.parent_id == first.id and second.author_id == alice
        history = note_history(session, analysis_id=analysis, owner_id=alice)
        assert [(n.version, n.body) for n in history] == [
            (2, "Lesion left, 2 cm."),
            (1, "Lesion left."),
        ]
        assert latest_note(session, analysis_id=analysis, owner_id=alice).body.endswith("2 cm.")
        assert latest_notes(session, owner_id=alice, analysis_ids=[analysis])[analysis].version == 2
        actions = [
            item.action for item in clinical_activity.recent_activity(session, owner_id=alice)
        ]
        assert actions.count(Action.NOTE_EDIT) == 2


def test_a_save_based_on_a_stale_version_is_refused_and_shows_the_newer_text(case):
    engine, alice, _, analysis = case
    with Session(engine, expire_on_commit=False) as session:
        add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="v1", base_version=None
        )
        session.commit()
        # Two tabs opened version 1; tab A saves first.
        add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="tab A", base_version=1
        )
        session.commit()
        with pytest.raises(StaleNoteError) as refused:
            add_note_version(
                session, analysis_id=analysis, owner_id=alice, body="tab B", base_version=1
            )
        assert refused.value.current.body == "tab A"
        assert "not saved" in str(refused.value)
        # A first note written in two tabs: the second "no note yet" save is stale too.
        other = make_analysis(session, alice, "C2")
        add_note_version(session, analysis_id=other.id, owner_id=alice, body="x", base_version=None)
        with pytest.raises(StaleNoteError):
            add_note_version(
                session, analysis_id=other.id, owner_id=alice, body="y", base_version=None
            )
        session.commit()
        assert [n.body for n in note_history(session, analysis_id=analysis, owner_id=alice)] == [
            "tab A",
            "v1",
        ]


def test_saving_the_same_text_adds_no_version(case):
    engine, alice, _, analysis = case
    with Session(engine, expire_on_commit=False) as session:
        add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="same", base_version=None
        )
        again = add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="same", base_version=1
        )
        assert again.version == 1
        assert len(note_history(session, analysis_id=analysis, owner_id=alice)) == 1


def test_another_user_can_neither_read_nor_write_notes_or_reports(case):
    engine, alice, bob, analysis = case
    with Session(engine, expire_on_commit=False) as session:
        add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="mine", base_version=None
        )
        report = issue_report(
            session,
            analysis_id=analysis,
            owner_id=alice,
            pdf=PDF,
            filename="r.pdf",
            note_version_id=None,
        )
        session.commit()
        with pytest.raises(NotFoundError):
            add_note_version(
                session, analysis_id=analysis, owner_id=bob, body="theirs", base_version=1
            )
        with pytest.raises(NotFoundError):
            issue_report(
                session,
                analysis_id=analysis,
                owner_id=bob,
                pdf=PDF,
                filename="r.pdf",
                note_version_id=None,
            )
        assert note_history(session, analysis_id=analysis, owner_id=bob) == []
        assert latest_note(session, analysis_id=analysis, owner_id=bob) is None
        assert latest_notes(session, owner_id=bob, analysis_ids=[analysis]) == {}
        assert list_reports(session, analysis_id=analysis, owner_id=bob) == []
        assert get_report(session, report_id=report.id, owner_id=bob) is None


def test_issued_reports_keep_their_bytes_and_a_new_one_is_a_new_entry(case):
    engine, alice, _, analysis = case
    with Session(engine, expire_on_commit=False) as session:
        note = add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="n", base_version=None
        )
        first = issue_report(
            session,
            analysis_id=analysis,
            owner_id=alice,
            pdf=PDF,
            filename="a.pdf",
            note_version_id=note.id,
        )
        second = issue_report(
            session,
            analysis_id=analysis,
            owner_id=alice,
            pdf=PDF + b"2",
            filename="b.pdf",
            note_version_id=note.id,
        )
        session.commit()
        first_id = first.id
    with Session(engine, expire_on_commit=False) as session:
        stored = get_report(session, report_id=first_id, owner_id=alice)
        assert stored.pdf == PDF and stored.note_version_id == note.id
        assert [r.id for r in list_reports(session, analysis_id=analysis, owner_id=alice)] == [
            second.id,
            first_id,
        ]
        with pytest.raises(ValueError, match="not a PDF"):
            issue_report(
                session,
                analysis_id=analysis,
                owner_id=alice,
                pdf=b"",
                filename="x.pdf",
                note_version_id=None,
            )


@pytest.mark.postgresql_only
def test_a_save_that_loses_the_race_at_insert_time_is_refused_too(case):
    """Both saves passed the version check; the database's unique (analysis, version)
    constraint turns the second insert into a StaleNoteError, and the session stays usable.

    Only PostgreSQL lets another session insert here: there the analysis row's lock
    (:func:`db.clinical.lock_own_analysis`) does not stop an insert beside it, while on SQLite
    it is the write lock itself, so another save waits for this one and cannot come between
    (the other session below would wait for ever)."""
    from sqlalchemy import event

    from db.models import NoteVersion

    engine, alice, _, analysis = case

    def other_tab_saves_first(session, flush_context, instances):
        with Session(engine) as other:
            other.add(NoteVersion(analysis_id=analysis, version=1, author_id=alice, body="first"))
            other.commit()

    with Session(engine, expire_on_commit=False) as session:
        event.listen(session, "before_flush", other_tab_saves_first, once=True)
        with pytest.raises(StaleNoteError) as refused:
            add_note_version(
                session, analysis_id=analysis, owner_id=alice, body="second", base_version=None
            )
        assert refused.value.current.body == "first"
        session.commit()  # still usable: the savepoint was rolled back, not the transaction
        history = note_history(session, analysis_id=analysis, owner_id=alice)
        assert [n.body for n in history] == ["first"]


def test_a_saved_note_is_part_of_the_callers_transaction(case):
    """A note version and its audit event are saved together or not at all. SQLite took the
    savepoint that guards the version number as the transaction itself, and its release
    committed the note on its own: rolled back afterwards (the audit event's write failing,
    say), the caller kept a note that no ``note_edit`` event recorded."""
    engine, alice, _, analysis = case
    with Session(engine, expire_on_commit=False) as session:
        add_note_version(
            session, analysis_id=analysis, owner_id=alice, body="Lesion left.", base_version=None
        )
        with Session(engine) as other:  # another browser session reads meanwhile
            assert note_history(other, analysis_id=analysis, owner_id=alice) == []
        session.rollback()
        assert note_history(session, analysis_id=analysis, owner_id=alice) == []
        activity = clinical_activity.recent_activity(session, owner_id=alice)
        assert Action.NOTE_EDIT not in [item.action for item in activity]
