"""Tumor size at follow-up: one analysis against an earlier one of the same patient.

What a follow-up read of a lower-grade glioma asks first is whether the tumor grew. Two
stored analyses are compared by what :mod:`brainloc.findings` measured on each:

- the **largest cross-section**, longest × perpendicular diameter (:mod:`brainloc.calipers`),
  whose product is the size measure of the RANO criteria for glioma;
- the **estimated volume** (tumor area × slice distance, summed), when both scans carry
  their geometry.

Changes are given in percent of the baseline, beside the size thresholds of RANO for
lower-grade glioma (product of the perpendicular diameters: +25 % for progression, -25 % for
a minor and -50 % for a partial response) so the reader can place them. The tool does not
assign a response category: RANO also weighs new lesions, enhancement, the clinical state and
steroid dose, asks for confirmation on a later scan, and measures the lesion a radiologist
chose, not a model's mask.

Sizes are compared only in millimetres: pixels of two scans need not be the same size. Which
analysis is the baseline is the user's choice; when DICOM headers record the scan dates, the
scans made before the follow-up are offered first (:func:`baseline_choices`). The scan dates
are shown with the days between them, and a baseline made after the follow-up is pointed
out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from brainloc.calipers import diameters_text
from brainloc.casework import model_labels
from db import clinical

#: The size thresholds of RANO for lower-grade glioma, on the product of the diameters.
RANO_LGG_THRESHOLDS = (
    "RANO size thresholds for lower-grade glioma (product of the perpendicular diameters): "
    "+25 % progression; -25 % minor response; -50 % partial response. They also weigh new "
    "lesions, enhancement, clinical state and steroids, and need confirmation: this comparison "
    "is not a response assessment."
)
NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded"
NO_TUMOR = "no tumor detected"
#: A scan the classifier called tumor whose mask is empty: there is nothing to measure.
NO_OUTLINE = "tumor called, not outlined"


@dataclass(frozen=True)
class SizeRow:
    """One line of the comparison: what, at baseline, at follow-up, and the change."""

    label: str
    baseline: str
    follow_up: str
    change: str


@dataclass(frozen=True)
class Comparison:
    """The comparison of a follow-up analysis with its baseline.

    Attributes:
        rows: readable rows for a table.
        product_change: relative change of the largest cross-section's product (0.32 for
            +32 %), or None when it cannot be computed.
        volume_change: the same for the estimated volume.
        notes: why a change is missing, and what else the reader must know.
    """

    rows: tuple[SizeRow, ...]
    product_change: float | None
    volume_change: float | None
    notes: tuple[str, ...]


def _percent(change: float) -> str:
    return f"{change:+.0%}"


def _change(before: float, after: float) -> tuple[str, float | None]:
    if before > 0:
        change = after / before - 1.0
        return _percent(change), change
    return ("new" if after > 0 else "none at either"), None


def _dates(before: str | None, after: str | None, notes: list[str]) -> SizeRow:
    """The scan dates (DICOM headers) and the days between them; a baseline made after the
    follow-up is pointed out."""
    change = "-"
    if before and after:
        days = (date.fromisoformat(after) - date.fromisoformat(before)).days
        change = f"{days:+d} days"
        if days < 0:
            notes.append(
                "By the dates in the DICOM headers the baseline was made after this scan: "
                "choose the earlier scan as the baseline."
            )
    elif not (before or after):
        notes.append(
            "Neither upload records when its scan was made (only DICOM headers do); the "
            "order of the two scans is the one you chose."
        )
    return SizeRow("Scan date", before or NOT_RECORDED, after or NOT_RECORDED, change)


def models_label(analysis) -> str:
    """The models a stored analysis (``db.models.Analysis``) ran with, for comparing."""
    return ", ".join(
        model_labels(
            (analysis.classifier_name, analysis.classifier_version),
            (analysis.segmenter_name, analysis.segmenter_version),
        )
    )


def baseline_choices(analyses: Sequence[Any], analysis_id: int) -> dict[int, str]:
    """The analyses a follow-up can be compared with, labelled and in the order to offer them.

    When the follow-up's scan date is known, scans made before it come first (the latest
    first), then analyses without a scan date (the latest upload first), then scans made on
    the same day or later. Without a scan date, the latest upload comes first. A label gives
    the scan date when it is known, else the upload time: ``"REF · #12 · scan 2025-03-14"``.
    """

    def scan_date(analysis) -> str | None:
        return (analysis.findings or {}).get("scan_date")

    this = next((a for a in analyses if a.id == analysis_id), None)
    this_date = scan_date(this) if this is not None else None
    others = [a for a in analyses if a.id != analysis_id]

    def order(analysis) -> tuple[int, int, float]:
        uploaded = -analysis.created_at.timestamp()
        day = scan_date(analysis)
        if this_date is None:
            return (0, 0, uploaded)
        if day is None:
            return (1, 0, uploaded)
        ordinal = date.fromisoformat(day).toordinal()
        if day < this_date:
            return (0, -ordinal, uploaded)
        return (2, ordinal, uploaded)

    return {
        a.id: f"{a.case_reference} · #{a.id} · "
        + (f"scan {scan_date(a)}" if scan_date(a) else f"uploaded {a.created_at:%Y-%m-%d %H:%M}")
        for a in sorted(others, key=order)
    }


def compare_own(session, *, owner_id: int, analysis_id: int, baseline_id: int):
    """Compare an own analysis with an own baseline, both read with the owner's filter
    (``db.clinical.get_analysis``).

    Returns:
        (the baseline's ``Analysis`` row, the :class:`Comparison`), or None when either is
        not the owner's or was marked entered in error (a mistaken analysis measures nothing
        to compare), or the baseline is the analysis itself.
    """
    if baseline_id == analysis_id:
        return None
    baseline = clinical.get_analysis(session, analysis_id=baseline_id, owner_id=owner_id)
    follow_up = clinical.get_analysis(session, analysis_id=analysis_id, owner_id=owner_id)
    if baseline is None or follow_up is None:
        return None
    if baseline.entered_in_error_at is not None or follow_up.entered_in_error_at is not None:
        return None
    comparison = compare(
        baseline.findings,
        follow_up.findings,
        baseline_models=models_label(baseline),
        follow_up_models=models_label(follow_up),
        baseline_called=baseline.has_tumor,
        follow_up_called=follow_up.has_tumor,
    )
    return baseline, comparison


def compare(
    baseline: Mapping[str, Any],
    follow_up: Mapping[str, Any],
    *,
    baseline_models: str = "",
    follow_up_models: str = "",
    baseline_called: bool | None = None,
    follow_up_called: bool | None = None,
) -> Comparison:
    """Compare two analyses by their stored case findings (``Analysis.findings``).

    Args:
        baseline: the earlier scan's case findings.
        follow_up: the later scan's case findings.
        baseline_models, follow_up_models: the models each analysis ran with, as labels; a
            difference is pointed out, since it can account for part of a change.
        baseline_called, follow_up_called: each analysis' decision (``Analysis.has_tumor``).
            A scan called tumor whose mask is empty (the classifier found tumor, the segmenter
            outlined none) has no size: it reads :data:`NO_OUTLINE`, and no change is
            computed against it. None: judged from the findings alone.
    """
    notes: list[str] = []
    called = [
        bool(flag) if flag is not None else bool(findings.get("tumor_slices"))
        for flag, findings in ((baseline_called, baseline), (follow_up_called, follow_up))
    ]
    outlined = [bool(findings.get("tumor_slices")) for findings in (baseline, follow_up)]
    unmeasurable = [c and not o for c, o in zip(called, outlined, strict=True)]
    for name, flag in zip(("baseline", "follow-up"), unmeasurable, strict=True):
        if flag:
            notes.append(
                f"The {name} was called tumor, but the segmenter outlined none, so its size is "
                "not known and no change is computed against it: compare the images yourself."
            )
    rows: list[SizeRow] = [_dates(baseline.get("scan_date"), follow_up.get("scan_date"), notes)]
    # An analysis from before diameters has no "largest_cross_section" key at all; one without
    # tumor has it, as None.
    measured = ["largest_cross_section" in findings for findings in (baseline, follow_up)]
    before, after = (findings.get("largest_cross_section") for findings in (baseline, follow_up))
    cells = []
    for name, was_measured, section, no_outline in (
        ("baseline", measured[0], before, unmeasurable[0]),
        ("follow-up", measured[1], after, unmeasurable[1]),
    ):
        if no_outline:
            cells.append(NO_OUTLINE)
        elif not was_measured:
            notes.append(
                f"The {name} was analysed before diameters were measured; analyse its scan "
                "again to compare diameters."
            )
            cells.append(NOT_MEASURED)
        elif section is None:
            cells.append(NO_TUMOR)
        else:
            size = diameters_text(section["longest"], section["perpendicular"], section["unit"])
            cells.append(f"{size} (slice {int(section['slice']) + 1})")
    product_change = None
    change = "-"
    if all(measured) and not any(unmeasurable):
        units = {section["unit"] for section in (before, after) if section}
        if "px" in units:
            notes.append(
                "Diameters in pixels (a scan without pixel spacing) cannot be compared between "
                "two scans; upload DICOM or NIfTI, which carry the spacing."
            )
        else:
            products = [s["longest"] * s["perpendicular"] if s else 0.0 for s in (before, after)]
            change, product_change = _change(*products)
    rows.append(SizeRow("Largest cross-section (longest × perpendicular)", *cells, change))
    if product_change is not None:
        rows.append(
            SizeRow(
                "Product of the diameters",
                f"{before['longest'] * before['perpendicular']:.0f} mm²",
                f"{after['longest'] * after['perpendicular']:.0f} mm²" if after else NO_TUMOR,
                change,
            )
        )

    volumes = [findings.get("volume_ml") for findings in (baseline, follow_up)]
    volume_change = None
    volume_cells = [
        NO_OUTLINE if no_outline else NOT_MEASURED if v is None else f"{v:.2f} mL"
        for v, no_outline in zip(volumes, unmeasurable, strict=True)
    ]
    volume_text = "-"
    if any(unmeasurable):
        pass  # said above
    elif None in volumes:
        notes.append(
            "A volume needs one volume with its geometry (a DICOM series without a gap or a "
            "NIfTI file) on both sides."
        )
    else:
        volume_text, volume_change = _change(*volumes)
    rows.append(SizeRow("Estimated tumor volume", *volume_cells, volume_text))

    counts = [len(findings.get("tumor_slices") or []) for findings in (baseline, follow_up)]
    totals = [findings.get("n_slices") for findings in (baseline, follow_up)]
    rows.append(
        SizeRow(
            "Slices with tumor",
            *(f"{c} of {t}" if t else str(c) for c, t in zip(counts, totals, strict=True)),
            f"{counts[1] - counts[0]:+d}",
        )
    )
    if baseline_models and follow_up_models and baseline_models != follow_up_models:
        notes.append(
            f"The two analyses ran with different models ({baseline_models}; "
            f"{follow_up_models}): part of a change may be the models'."
        )
    if before and not after and measured[1] and not called[1]:
        notes.append(
            "No tumor was detected at follow-up. A negative result does not rule out tumor "
            "(see the model card)."
        )
    return Comparison(tuple(rows), product_change, volume_change, tuple(notes))
