"""The lifetime history as a table: rows, weekly summary and CSV export.

The page asks :mod:`db.clinical` for the filtered analyses and the current notes; this module
turns them into a ``pandas.DataFrame`` with readable columns, the per-week counts behind the
history charts, and CSV bytes for the export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from brainloc.calipers import diameters_text
from brainloc.csv_export import csv_bytes
from brainloc.findings_text import probability_percent

COLUMNS = [
    "id",
    "created_at",
    "case_reference",
    "decision",
    "tumor_probability",
    "slices",
    "tumor_slices",
    "longest_diameter",
    "perpendicular_diameter",
    "diameter_unit",
    "volume_ml",
    "note",
    "models",
    "entered_in_error",
]


def history_frame(analyses: Sequence[Any], notes: Mapping[int, str]) -> pd.DataFrame:
    """One row per analysis (objects with the :class:`db.models.Analysis` fields).

    ``entered_in_error`` is the reason an analysis was marked entered in error, "" for the
    others (History leaves them out unless its filter asks for them).

    Args:
        analyses: the analyses, already filtered and sorted by the database.
        notes: analysis id -> current note text.
    """
    rows = [
        {
            **_size(a.findings or {}),
            "id": int(a.id),
            "created_at": a.created_at,
            "case_reference": a.case_reference,
            "decision": "tumor" if a.has_tumor else "no tumor",
            "tumor_probability": float(a.tumor_probability),
            "slices": int(a.slice_count),
            "tumor_slices": len((a.findings or {}).get("tumor_slices") or []),
            "note": notes.get(int(a.id), ""),
            "models": f"{a.classifier_name} v{a.classifier_version}; "
            f"{a.segmenter_name} v{a.segmenter_version}"
            + (f" ({a.arithmetic})" if a.arithmetic else ""),
            "entered_in_error": a.entered_in_error_reason if a.entered_in_error_at else "",
        }
        for a in analyses
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _size(findings: Mapping[str, Any]) -> dict[str, Any]:
    """The largest cross-section's diameters (:mod:`brainloc.calipers`) and the volume, empty
    where not measured (no tumor, no geometry, or an analysis from before diameters)."""
    section = findings.get("largest_cross_section") or {}
    return {
        "longest_diameter": round(section["longest"], 1) if section else None,
        "perpendicular_diameter": round(section["perpendicular"], 1) if section else None,
        "diameter_unit": section.get("unit", ""),
        "volume_ml": findings.get("volume_ml"),
    }


def shown_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The history table as the page shows it: ``tumor_probability`` as a percentage that never
    reads 100.0 or 0.0 (:func:`brainloc.findings_text.probability_percent`), and the diameters
    as one ``largest_cross_section`` text ("42.1 × 30.5 mm"). The CSV export keeps the stored
    probability and the diameters as numbers."""
    diameters = ["longest_diameter", "perpendicular_diameter", "diameter_unit"]
    sections = [
        diameters_text(longest, perpendicular, unit) if unit else ""
        for longest, perpendicular, unit in frame[diameters].itertuples(index=False)
    ]
    shown = frame.assign(
        tumor_probability=frame["tumor_probability"].map(probability_percent),
        largest_cross_section=sections,
    )
    order = [c for c in COLUMNS if c not in diameters]
    order.insert(order.index("volume_ml"), "largest_cross_section")
    return shown[order]


def weekly_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per calendar week (Monday start): number of analyses and share called positive, of the
    analyses not marked entered in error (a mistaken analysis is no case seen).

    Returns:
        columns ``week`` (date), ``analyses`` (int), ``share_positive`` (0..1); weeks without
        analyses between the first and last one are included with zero analyses and a
        ``share_positive`` of NaN (no share: the chart leaves a gap there, not "0 %").
    """
    if "entered_in_error" in frame:
        frame = frame[frame["entered_in_error"].fillna("").eq("")]
    if frame.empty:
        return pd.DataFrame({"week": [], "analyses": [], "share_positive": []})
    created = pd.to_datetime(frame["created_at"], utc=True)
    week = (created.dt.tz_localize(None).dt.normalize()) - pd.to_timedelta(
        created.dt.day_of_week, unit="D"
    )
    grouped = (
        pd.DataFrame({"week": week, "positive": frame["decision"].eq("tumor")})
        .groupby("week")["positive"]
        .agg(["size", "mean"])
    )
    full = pd.date_range(grouped.index.min(), grouped.index.max(), freq="7D")
    grouped = grouped.reindex(full)  # empty weeks: NaN count and NaN share
    return pd.DataFrame(
        {
            "week": [stamp.date() for stamp in grouped.index],
            "analyses": grouped["size"].fillna(0).astype(int).to_numpy(),
            "share_positive": grouped["mean"].astype(float).to_numpy(),
        }
    )


def to_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV of the history table (timestamps in ISO 8601 UTC; text that a spreadsheet
    would run as a formula is quoted, :mod:`brainloc.csv_export`)."""
    out = frame.copy()
    if not out.empty:
        out["created_at"] = pd.to_datetime(out["created_at"], utc=True).dt.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    return csv_bytes(out)


def day_range(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """Inclusive calendar days as a [from, to) UTC datetime range for the database query."""
    if start and end and start > end:
        raise ValueError("the start date is after the end date")
    created_from = datetime.combine(start, time.min, tzinfo=UTC) if start else None
    created_to = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC) if end else None
    return created_from, created_to
