"""db.clinical on a real, migrated SQLite database: owner isolation, filters, atomic saves."""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.exc import StatementError
from sqlmodel import Session

from db import clinical, clinical_activity
from db.arrays import array_from_bytes
from db.audit import Action
from db.engine import session_scope
from db.migrate import upgrade_head
from db.models import AnalysisSlice, AuditEvent, User
from tests.db.clinical_factory import make_analysis, make_slice, make_user, migrated_engine


@pytest.fixture
def engine(empty_database_url):
    engine = migrated_engine(empty_database_url)
    yield engine
    engine.dispose()


def test_analysis_round_trips_scan_and_mask_exactly(engine):
    slices = [make_slice(0.2, area=0, seed=1), make_slice(0.8, seed=2)]
    with Session(engine, expire_on_commit=False) as session:
        owner = make_user(session, "alice")
        analysis = clinical.create_analysis(
            session, owner_id=owner.id, case_reference=" CASE-7 ", slices=slices
        )
        session.commit()
        analysis_id, owner_id = analysis.id, owner.id
    with Session(engine, expire_on_commit=False) as session:
        stored = clinical.get_analysis(session, analysis_id=analysis_id, owner_id=owner_id)
        assert stored.case_reference == "CASE-7"
        assert stored.tumor_probability == pytest.approx(0.8)
        assert stored.has_tumor and stored.slice_count == 2
        rows = clinical.get_slices(session, analysis_id=analysis_id, owner_id=owner_id)
        assert [row.slice_index for row in rows] == [0, 1]
        for row, original in zip(rows, slices, strict=True):
            np.testing.assert_array_equal(array_from_bytes(row.image), original.image)
            np.testing.assert_array_equal(array_from_bytes(row.mask), original.mask)
        assert rows[1].pixel_spacing_row_mm == 0.5


def test_another_users_analysis_by_id_returns_nothing(engine):
    with Session(engine, expire_on_commit=False) as session:
        alice, bob = make_user(session, "alice"), make_user(session, "bob")
        analysis = make_analysis(session, alice.id)
        session.commit()
        assert clinical.get_analysis(session, analysis_id=analysis.id, owner_id=bob.id) is None
        assert clinical.get_slices(session, analysis_id=analysis.id, owner_id=bob.id) == []
        assert clinical.list_analyses(session, owner_id=bob.id) == []
        assert not clinical.owns_analysis(session, analysis_id=analysis.id, owner_id=bob.id)
        assert (
            clinical.record_case_event(
                session, owner_id=bob.id, analysis_id=analysis.id, action=Action.VIEW
            )
            is None
        )
        assert clinical_activity.recent_activity(session, owner_id=bob.id) == []
        assert clinical.get_analysis(session, analysis_id=analysis.id, owner_id=alice.id)


def test_a_failure_mid_save_leaves_nothing(empty_database_url):
    url = empty_database_url
    upgrade_head(url)
    with session_scope(url) as session:
        owner_id = make_user(session, "alice").id
    # Findings that cannot be stored as JSON pass every check and fail only when slice 1 is
    # inserted, after the analysis row was flushed (SQLAlchemy wraps the error on SQLite;
    # psycopg raises it as it is).
    bad = replace(make_slice(seed=1), findings={"area_px": object()})
    with pytest.raises((StatementError, TypeError), match="JSON"), session_scope(url) as session:
        clinical.create_analysis(
            session, owner_id=owner_id, case_reference="X", slices=[make_slice(), bad]
        )
    with session_scope(url) as session:
        assert clinical.count_analyses(session, owner_id=owner_id) == 0
        assert session.get(AnalysisSlice, 1) is None
        assert clinical_activity.recent_activity(session, owner_id=owner_id) == []


class _LockProbe:
    """A scan that, whenever it is read as an array (to check or encode it), notes whether
    another connection could write to the database at that moment."""

    def __init__(self, array: np.ndarray, path, seen: list[bool]) -> None:
        self.array, self.path, self.seen = array, path, seen
        self.shape = array.shape

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        other = sqlite3.connect(self.path, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            self.seen.append(False)
        except sqlite3.OperationalError:  # "database is locked": the save holds the lock
            self.seen.append(True)
        finally:
            other.close()
        return self.array


def test_scans_are_encoded_before_the_save_takes_the_write_lock(tmp_path):
    """SQLite has one write lock, held from a transaction's first write to its commit.
    Compressing a large case's scans while holding it (about 9 s for 512 slices of 512 x 512)
    made other users' sign-ins and saves wait past the busy timeout and fail with "database
    is locked"; the scans are encoded first."""
    path = tmp_path / "lock.db"
    engine = migrated_engine(f"sqlite:///{path}")
    seen: list[bool] = []
    slices = [make_slice(seed=seed) for seed in range(3)]
    probed = [replace(item, image=_LockProbe(item.image, path, seen)) for item in slices]
    with Session(engine, expire_on_commit=False) as session:
        owner_id = make_user(session, "alice").id
        session.commit()
        analysis = clinical.create_analysis(
            session, owner_id=owner_id, case_reference="BIG", slices=probed
        )
        session.commit()
        rows = clinical.get_slices(session, analysis_id=analysis.id, owner_id=owner_id)
    engine.dispose()
    assert seen and not any(seen), seen
    for row, original in zip(rows, slices, strict=True):
        np.testing.assert_array_equal(array_from_bytes(row.image), original.image)


def test_a_malformed_mask_is_refused_with_its_slice_number(engine):
    bad = clinical.SliceInput(
        image=np.zeros((8, 8, 3), np.uint8),
        mask=np.zeros((4, 4), bool),
        tumor_probability=0.1,
        has_tumor=False,
    )
    with Session(engine, expire_on_commit=False) as session:
        owner = make_user(session, "alice")
        with pytest.raises(ValueError, match="slice 1: the mask"):
            clinical.create_analysis(
                session, owner_id=owner.id, case_reference="X", slices=[make_slice(), bad]
            )


@pytest.mark.parametrize(
    ("reference", "slices", "message"),
    [("  ", [1], "case reference"), ("A", [], "at least one slice")],
)
def test_create_refuses_missing_parts(engine, reference, slices, message):
    with Session(engine, expire_on_commit=False) as session:
        owner = make_user(session, "alice")
        with pytest.raises(ValueError, match=message):
            clinical.create_analysis(
                session,
                owner_id=owner.id,
                case_reference=reference,
                slices=[make_slice() for _ in slices],
            )


def test_list_filters_sort_and_text_search(engine):
    from db.clinical_notes import add_note_version

    with Session(engine, expire_on_commit=False) as session:
        alice, bob = make_user(session, "alice"), make_user(session, "bob")
        low = make_analysis(session, alice.id, "LOW-1", (0.1, 0.2))
        high = make_analysis(session, alice.id, "HIGH-2", (0.3, 0.95))
        mid = make_analysis(session, alice.id, "MID_3", (0.6,))
        make_analysis(session, bob.id, "HIGH-BOB", (0.99,))
        old = datetime(2026, 1, 5, tzinfo=UTC)
        low.created_at = old
        add_note_version(
            session,
            analysis_id=mid.id,
            owner_id=alice.id,
            body="Glioma suspected",
            base_version=None,
        )
        add_note_version(
            session, analysis_id=mid.id, owner_id=alice.id, body="Oedema only", base_version=1
        )
        session.commit()

        def ids(**filters):
            return [a.id for a in clinical.list_analyses(session, owner_id=alice.id, **filters)]

        assert set(ids()) == {low.id, high.id, mid.id}
        assert ids(has_tumor=False) == [low.id]
        assert set(ids(has_tumor=True)) == {high.id, mid.id}
        assert ids(min_probability=0.5, max_probability=0.7) == [mid.id]
        assert ids(sort_by="tumor_probability", descending=False) == [low.id, mid.id, high.id]
        assert ids(created_to=old + timedelta(days=1)) == [low.id]
        assert set(ids(created_from=old + timedelta(days=1))) == {high.id, mid.id}
        assert ids(text="high") == [high.id]
        assert ids(text="oedema") == [mid.id]
        # Only the current note version is searched, and LIKE wildcards are literal.
        assert ids(text="glioma") == []
        assert ids(text="_") == [mid.id]
        assert ids(text="%") == []
        with pytest.raises(ValueError, match="sort_by"):
            ids(sort_by="password_hash")
        with pytest.raises(ValueError, match="minimum"):
            ids(min_probability=0.9, max_probability=0.1)


def test_text_search_folds_case_beyond_ascii(engine):
    """Polish, Greek (final sigma too), German and Cyrillic text matches whatever its case, in the
    case reference and in the current note (SQLite's own LIKE folds ASCII letters only, and
    PostgreSQL's ILIKE misses a final sigma), on both databases."""
    from db.clinical_notes import add_note_version

    with Session(engine, expire_on_commit=False) as session:
        alice = make_user(session, "alice")
        lodz = make_analysis(session, alice.id, "ŁÓDŹ-17")
        athens = make_analysis(session, alice.id, "ΑΘΉΝΑ-ΟΔΟΣ")
        weiss = make_analysis(session, alice.id, "WEISS-2")
        moscow = make_analysis(session, alice.id, "МОСКВА-3")
        noted = make_analysis(session, alice.id, "N-1")
        add_note_version(
            session,
            analysis_id=noted.id,
            owner_id=alice.id,
            body="Zmiana w PŁACIE CZOŁOWYM; ΌΓΚΟΣ; ОПУХОЛЬ",
            base_version=None,
        )
        session.commit()

        def ids(text):
            return [a.id for a in clinical.list_analyses(session, owner_id=alice.id, text=text)]

        assert ids("łódź") == ids("ŁÓDŹ") == ids("Łódź-1") == [lodz.id]
        assert ids("αθήνα-οδος") == ids("οδοσ") == ids("ΟΔΟς") == [athens.id]
        assert ids("москва") == [moscow.id]
        assert ids("weiß") == ids("Weiss-2") == [weiss.id]
        assert ids("czołowym") == ids("płacie") == [noted.id]
        assert ids("όγκος") == ids("опухоль") == [noted.id]
        # Wildcards stay literal after folding.
        assert ids("łó%17") == [] and ids("ŁÓDŹ_17") == []


def test_recent_activity_is_newest_first_and_links_cases(engine):
    with Session(engine, expire_on_commit=False) as session:
        alice = make_user(session, "alice")
        analysis = make_analysis(session, alice.id, "ACT-1")
        event = clinical.record_case_event(
            session, owner_id=alice.id, analysis_id=analysis.id, action=Action.VIEW
        )
        event.created_at = event.created_at + timedelta(seconds=5)
        session.add(AuditEvent(action=Action.LOGIN, actor_id=alice.id))
        session.commit()
        items = clinical_activity.recent_activity(session, owner_id=alice.id)
        assert [item.action for item in items] == [Action.VIEW, Action.UPLOAD]
        assert all(item.analysis_id == analysis.id for item in items)
        assert items[0].case_reference == "ACT-1"


@pytest.mark.parametrize("status", ["disabled", "rejected", "pending"])
def test_an_analysis_finishing_after_its_owner_was_disabled_is_not_stored(engine, status):
    """The Analyze page checks the account when the button is pressed, then runs the models
    (minutes for a large case). An administrator who disabled the account meanwhile did not
    stop the save: the case was stored, and audited, for a disabled account. The owner's
    status is read again once the save holds the write lock, so a change committed before it
    refuses the save, and one after it waits for the save."""
    with Session(engine, expire_on_commit=False) as session:
        owner_id = make_user(session, "alice").id
        session.commit()
    with Session(engine) as admin_page:  # while the models run
        admin_page.get(User, owner_id).status = status
        admin_page.commit()
    with Session(engine, expire_on_commit=False) as session:
        with pytest.raises(ValueError, match="not approved"):
            make_analysis(session, owner_id)
        session.rollback()
        assert clinical.count_analyses(session, owner_id=owner_id) == 0
        assert clinical_activity.recent_activity(session, owner_id=owner_id) == []


def _end_sign_ins(engine, owner_id: int, at: datetime) -> None:
    """What a password change or "End all other sessions" in another tab commits."""
    with Session(engine) as account_page:
        account_page.get(User, owner_id).sessions_ended_at = at
        account_page.commit()


@pytest.mark.parametrize(
    ("signed_in", "stored"),
    [("before", False), ("after", True), ("no-session", True)],
)
def test_an_analysis_finishing_after_its_session_was_ended_elsewhere_is_not_stored(
    engine, signed_in, stored
):
    """A practitioner pressed Analyze in one tab; while the models ran, the password was
    changed (or "End all other sessions" pressed) in another. The page had checked the
    session when the button was pressed, so the save still stored the analysis of a session
    that had ended (6 of 6 runs, 3 each on SQLite and PostgreSQL, of the real Analyze page
    whose account's sign-ins were ended from another thread 0.6 s into a 1.5 to 2.5 s
    analysis). The session's sign-in time is compared with the account's once the save holds
    the write lock. The tab that ended the other sessions goes on with a sign-in time after
    the cut-off (ui.auth.keep_this_session), and a save from no browser session (the demo
    command) has none: both still save."""
    ended_at = datetime.now(UTC) - timedelta(minutes=1)
    signed_in_at = {
        "before": ended_at - timedelta(minutes=4),
        "after": ended_at + timedelta(microseconds=1),
        "no-session": None,
    }[signed_in]
    with Session(engine, expire_on_commit=False) as session:
        owner_id = make_user(session, "alice").id
        session.commit()
    _end_sign_ins(engine, owner_id, ended_at)  # while the models run
    with Session(engine, expire_on_commit=False) as session:
        save = functools.partial(
            clinical.create_analysis,
            session, owner_id=owner_id, case_reference="C", slices=[make_slice()],
            signed_in_at=signed_in_at,
        )  # fmt: skip
        if stored:
            save()
            session.commit()
        else:
            with pytest.raises(ValueError, match="signed out while the analysis ran"):
                save()
            session.rollback()
        assert clinical.count_analyses(session, owner_id=owner_id) == int(stored)
        assert bool(clinical_activity.recent_activity(session, owner_id=owner_id)) == stored
