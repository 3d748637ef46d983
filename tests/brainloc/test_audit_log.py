"""The audit log as administrators search and export it, on a real database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from brainloc import accounts
from brainloc.audit_log import AuditFilter, audit_csv, audit_frame, detail_text, export_name
from db import audit
from tests.db.clinical_factory import make_analysis


def _read(csv: bytes) -> pd.DataFrame:
    return pd.read_csv(pd.io.common.BytesIO(csv), keep_default_na=False)


def test_an_upload_is_audited_by_record_id_without_its_case_reference(make_account, db_session):
    owner = make_account("alice")
    analysis = make_analysis(db_session, owner.id, reference="ACC-2026-000123")
    db_session.commit()
    (event,) = audit.list_events(db_session, actions=[audit.Action.UPLOAD])
    assert (event.target_type, event.target_id) == ("analysis", analysis.id)
    assert "ACC-2026-000123" not in str(event.detail)
    row = audit_frame([event], {owner.id: "alice"}).iloc[0]
    assert (row["User"], row["Record"], row["Detail"]) == (
        "alice",
        f"analysis {analysis.id}",
        "slices=1",
    )


def test_older_events_keep_case_references_away_from_administrators():
    assert detail_text({"case_reference": "SMITH^JOHN", "slices": 3}) == "slices=3"
    assert detail_text({"what": "mask_png", "slice": 2}) == "slice=2, what=mask_png"


def test_the_csv_holds_iso_times_and_quotes_cells_a_spreadsheet_would_run(db_session):
    # A failed sign-in records whatever was typed as the username.
    typed = '=HYPERLINK("http://x.example")'
    assert not accounts.check_login(db_session, username=typed, password="x").ok
    db_session.commit()
    frame = audit_frame(audit.list_events(db_session), {})
    parsed = _read(audit_csv(frame))
    assert parsed.loc[0, "User"] == "—" and parsed.loc[0, "Action"] == "login_failed"
    assert parsed.loc[0, "Detail"].startswith("reason=unknown username, username=")
    assert parsed.loc[0, "Time (UTC)"].endswith("Z")
    # Any cell that starts like a formula is quoted (here one made so on purpose).
    forged = _read(audit_csv(frame.assign(Detail=typed)))
    assert forged.loc[0, "Detail"] == "'" + typed
    assert _read(audit_csv(audit_frame([], {}))).columns.tolist() == list(frame.columns)


def test_the_filter_turns_calendar_days_into_a_half_open_utc_range():
    query = AuditFilter(user_id=7, actions=("view",), first_day=date(2026, 3, 1),
                        last_day=date(2026, 3, 2), analysis_id=12).query()  # fmt: skip
    assert query == {
        "involving": 7,
        "actions": ["view"],
        "since": datetime(2026, 3, 1, tzinfo=UTC),
        "until": datetime(2026, 3, 3, tzinfo=UTC),
        "target": ("analysis", 12),
    }
    assert AuditFilter().query() == {
        "involving": None, "actions": None, "since": None, "until": None, "target": None,
    }  # fmt: skip
    with pytest.raises(ValueError, match="after the end"):
        AuditFilter(first_day=date(2026, 3, 2), last_day=date(2026, 3, 1)).query()
    assert (
        export_name(datetime(2026, 11, 27, 9, 5, tzinfo=UTC)) == "brainloc-audit-20261127-0905.csv"
    )
