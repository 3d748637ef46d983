"""Issue the PDF report of a stored case: gather its content, render it, store the bytes.

The content comes from the stored analysis (:class:`brainloc.casework.StoredCase`), the
signed-in practitioner and the current note version; :func:`brainloc.report.build_report`
renders it; :func:`db.clinical_notes.issue_report` keeps the exact bytes with the note version
they contain, so a later download returns the same document. A follow-up report also holds the
comparison with an earlier own analysis chosen as its baseline (:mod:`brainloc.followup`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from brainloc import overlay
from brainloc.casework import CHOSEN_PREFIX, StoredCase, load_case
from brainloc.findings_text import (
    VOLUME_RULE_NOTE,
    called_by_volume_rule,
    case_rows,
    findings_rows,
    probability_text,
)
from brainloc.followup import RANO_LGG_THRESHOLDS, compare_own
from brainloc.report import ReportData, build_report
from brainloc.scan_align import RESAMPLED_MARK
from brainloc.scan_stack import GAP_MARK
from brainloc.scans import COMBINED_NOTE, SINGLE_SEQUENCE_NOTE
from brainloc.study import RECOGNISED_PREFIX
from db import clinical_notes
from db.types import utc_now

#: How the report draws the slice: FLAIR (the sequence gliomas show best) with a
#: percentile window, the tumor filled and outlined in red.
REPORT_SEQUENCE = "FLAIR"
REPORT_WINDOW_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Author:
    """Who issues the report (the signed-in practitioner)."""

    id: int
    full_name: str
    category: str
    institution: str


def report_filename(case: StoredCase, issued_at: datetime) -> str:
    """A safe file name such as ``brainloc_CASE-1_20261125-100512.pdf``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case.case_reference)
    return f"brainloc_{safe[:60] or case.id}_{issued_at:%Y%m%d-%H%M%S}.pdf"


def reference_corrections(case: StoredCase) -> list[str]:
    """One line per correction of the case reference, newest first: when, and from what
    ("2026-12-08 09:15 UTC, from “CAS-1”"); empty when it was never corrected."""
    references = case.references
    return [
        f"{newer.created_at:%Y-%m-%d %H:%M} UTC, from “{older.reference}”"
        for newer, older in zip(references, references[1:], strict=False)
    ]


def entered_in_error_text(case: StoredCase) -> str:
    """What a report of an analysis marked entered in error says under that warning ("" for
    any other analysis)."""
    if not case.entered_in_error:
        return ""
    return (
        f"This analysis was marked entered in error on {case.entered_in_error_at:%Y-%m-%d %H:%M}"
        f" UTC. Reason: {case.entered_in_error_reason.rstrip('.')}. It is kept as a record "
        "only: do not use its result."
    )


def report_data(
    case: StoredCase,
    *,
    author: Author,
    notes: str,
    note_version: int | None,
    issued_at: datetime,
    slice_index: int | None = None,
) -> ReportData:
    """The report's content for one stored case (shown slice: ``slice_index`` or the key one)."""
    index = case.key_slice if slice_index is None else slice_index
    if not 0 <= index < len(case.slices):
        raise ValueError(f"slice {index} is not in this case of {len(case.slices)} slices")
    shown = case.slices[index]
    base = overlay.display_image(
        shown.image, REPORT_SEQUENCE, window_percentiles=REPORT_WINDOW_PERCENTILES
    )
    drawn = overlay.overlay_mask(base, shown.mask, style="fill+outline", opacity=0.45)
    caption = ReportData.overlay_caption
    if shown.findings.get("calipers"):
        drawn = overlay.draw_calipers(drawn, shown.findings["calipers"])
        caption += ", diameters (yellow)"
    findings = findings_rows(shown.findings)
    slice_rows: list[tuple[str, str, str]] = []
    if len(case.slices) > 1:
        findings = [*case_rows(case), (f"Shown slice {index + 1}", shown.name or "-"), *findings]
        slice_rows = [
            (
                str(s.index + 1),
                probability_text(s.tumor_probability)
                + (" *" if called_by_volume_rule(s, case.threshold) else ""),
                f"{s.findings.get('area_px', 0)} px",
            )
            for s in case.slices
            if s.has_tumor or s.index == index
        ]
    sequences = case.findings.get("sequences_present") or []
    sequences_note = ""
    if sequences and len(sequences) < 3:
        sequences_note = (
            f"Only {', '.join(sequences)} was present in the upload; the models were trained "
            "on pre-contrast, FLAIR and post-contrast slices."
        )
    scan_notes = case.findings.get("scan_notes") or []
    told = []
    if COMBINED_NOTE in scan_notes:
        sequences_note = f"Input: {COMBINED_NOTE}."
        # Which series it rests on (a study's, recognised by name), and any resampling.
        told = [
            note
            for note in scan_notes
            if note.startswith((RECOGNISED_PREFIX, CHOSEN_PREFIX)) or RESAMPLED_MARK in note
        ]
        sequences_note += "".join(f" {_sentence(note)}" for note in told)
    # Slices missing from the series: what the result cannot speak of, and why no volume.
    gaps = [note for note in scan_notes if note.startswith(GAP_MARK)]
    # Every other note the screen shows (a 16-bit rescale, an inverted or rotated image, files
    # left out): the report is the record a reader has later, so it says what the screen said.
    others = [
        note
        for note in scan_notes
        if note not in (SINGLE_SEQUENCE_NOTE, COMBINED_NOTE) and note not in (*told, *gaps)
    ]
    sequences_note = " ".join(
        filter(None, (sequences_note, *map(_sentence, gaps), *map(_sentence, others)))
    )
    return ReportData(
        practitioner_name=author.full_name,
        practitioner_category=author.category,
        institution=author.institution,
        case_reference=case.case_reference,
        reference_corrections=reference_corrections(case),
        entered_in_error=entered_in_error_text(case),
        analysis_id=case.id,
        analysed_at=case.created_at,
        scan_date=case.scan_date or "",
        issued_at=issued_at,
        tumor_probability=case.tumor_probability,
        threshold=case.threshold,
        has_tumor=case.has_tumor,
        scan=base,
        overlay=drawn,
        overlay_caption=caption,
        findings=findings,
        slice_rows=slice_rows,
        slice_note=f"* {VOLUME_RULE_NOTE}"
        if any(row[1].endswith(" *") for row in slice_rows)
        else "",
        notes=notes,
        note_version=note_version,
        models=[case.models_text],
        sequences_note=sequences_note,
        probability_label="Highest slice tumor probability"
        if len(case.slices) > 1
        else "Tumor probability",
    )


def issue_case_report(
    session,
    *,
    author: Author,
    analysis_id: int,
    issued_at: datetime | None = None,
    baseline_id: int | None = None,
) -> clinical_notes.IssuedReport | None:
    """Render and store a new report of an own analysis with its current note; with
    ``baseline_id``, a follow-up report that compares it with that earlier own analysis
    (:mod:`brainloc.followup`).

    Returns:
        The stored report, or None when the analysis or the baseline is not the author's.
    """
    case = load_case(session, owner_id=author.id, analysis_id=analysis_id)
    if case is None:
        return None
    comparison: dict = {}
    if baseline_id is not None:
        comparison = _comparison(session, author.id, analysis_id, baseline_id)
        if not comparison:
            return None
    issued_at = issued_at or utc_now()
    note = clinical_notes.latest_note(session, analysis_id=analysis_id, owner_id=author.id)
    data = report_data(
        case,
        author=author,
        notes=note.body if note else "",
        note_version=note.version if note else None,
        issued_at=issued_at,
    )
    data = replace(data, **comparison)
    return clinical_notes.issue_report(
        session,
        analysis_id=analysis_id,
        owner_id=author.id,
        pdf=build_report(data),
        filename=report_filename(case, issued_at),
        note_version_id=note.id if note else None,
        issued_at=issued_at,
    )


def _comparison(session, owner_id: int, analysis_id: int, baseline_id: int) -> dict:
    """The report fields of the comparison with an own baseline; {} when it is not the
    owner's or is the analysis itself."""
    compared = compare_own(
        session, owner_id=owner_id, analysis_id=analysis_id, baseline_id=baseline_id
    )
    if compared is None:
        return {}
    baseline, comparison = compared
    return {
        "comparison_title": (
            f"Baseline: analysis #{baseline.id}, {baseline.case_reference}, analysed "
            f"{baseline.created_at:%Y-%m-%d %H:%M} UTC."
        ),
        "comparison_rows": [
            (row.label, row.baseline, row.follow_up, row.change) for row in comparison.rows
        ],
        "comparison_notes": [*comparison.notes, RANO_LGG_THRESHOLDS],
    }


def _sentence(note: str) -> str:
    """A scan note as a sentence of the report: capitalised, ending in a full stop."""
    text = f"{note[0].upper()}{note[1:]}"
    return text if text.endswith(".") else f"{text}."
