"""Findings as readable (label, value) rows for the pages' tables and the PDF report.

The measurements come from :mod:`brainloc.findings` as stored with each analysis (plain
dicts); this module only words them, so the screen and the report say the same thing.
Slices are numbered from 1, as people count them.
"""

from __future__ import annotations

from typing import Any

from brainloc.calipers import diameters_text

#: The label of the bidimensional measurement, on screen and in the PDF.
DIAMETERS_LABEL = "Diameters (longest × perpendicular)"

#: Why a slice below the decision threshold is called tumor (:mod:`brainloc.decision`).
VOLUME_RULE_NOTE = (
    "Called tumor although its probability is below the decision threshold: it continues "
    "the tumor of the adjacent slices (volume rule, see the model card)."
)


def probability_bound(probability: float) -> str:
    """ ">" at or above 0.9995, "<" below 0.0005, else "": the probabilities that would print as
    a certain-looking 100.0% or 0.0%. The classifier never outputs exactly 0 or 1."""
    if probability >= 0.9995:
        return ">"
    if probability < 0.0005:
        return "<"
    return ""


def probability_percent(probability: float) -> float:
    """The percentage shown for a probability, to one decimal and never 100.0 or 0.0: 99.9 and 0.1
    where :func:`probability_bound` says ">" or "<" (for bars and gauges that show a number)."""
    return {">": 99.9, "<": 0.1}.get(probability_bound(probability), round(probability * 100, 1))


def probability_text(probability: float) -> str:
    """A model's probability as a percentage that never claims certainty: "12.3%", and
    ">99.9%" or "<0.1%" where one decimal would read 100.0% or 0.0% (:func:`probability_bound`).
    """
    bound = probability_bound(probability)
    return {">": ">99.9%", "<": "<0.1%"}.get(bound, f"{probability:.1%}")


def called_by_volume_rule(slice_, threshold: float) -> bool:
    """True for a stored slice called tumor by the volume rule, not by its own probability."""
    return bool(slice_.has_tumor and slice_.tumor_probability < threshold)


def findings_rows(findings: dict[str, Any]) -> list[tuple[str, str]]:
    """A slice's stored findings as (label, value) rows for tables and reports."""
    if not findings or not findings.get("area_px"):
        rows = [("Tumor area", "none detected")]
        if findings.get("brain_area_px"):
            rows.append(("Brain area", f"{findings['brain_area_px']} px"))
        return rows
    area = f"{findings['area_px']} px"
    if findings.get("area_mm2") is not None:
        area += f" ({findings['area_mm2']:.1f} mm²)"
    rows = [("Tumor area", area)]
    if findings.get("percent_of_brain") is not None:
        rows.append(("Share of brain area", f"{findings['percent_of_brain']:.1f} %"))
    if findings.get("side"):
        rows.append(
            ("Side", f"image {findings['side']} (patient {findings.get('patient_side', '?')})")
        )
    if findings.get("bbox"):
        # Stored as 0-based [top, bottom) and [left, right); shown as the first and last
        # pixel row and column, counted from 1 like the slices.
        top, left, bottom, right = findings["bbox"]
        rows.append(("Bounding box", f"rows {top + 1}-{bottom}, columns {left + 1}-{right}"))
    rows.append(("Separate regions", str(findings.get("regions", 0))))
    calipers = findings.get("calipers")
    if calipers:
        value = diameters_text(calipers["longest"], calipers["perpendicular"], calipers["unit"])
        if findings.get("regions", 0) > 1:
            value += " (the largest region)"
        rows.append((DIAMETERS_LABEL, value))
    return rows


def case_rows(case) -> list[tuple[str, str]]:
    """The case summary of a :class:`brainloc.casework.StoredCase` as (label, value) rows."""
    findings = case.findings
    tumor_slices = findings.get("tumor_slices") or []
    rows = [
        ("Slices analysed", str(len(case.slices))),
        ("Slices with tumor", f"{len(tumor_slices)}"),
    ]
    if tumor_slices:
        rows.append(
            (
                "Largest tumor on slice",
                f"{int(findings['largest_slice']) + 1} ({findings.get('largest_area_px')} px)",
            )
        )
    section = findings.get("largest_cross_section")
    if section:
        size = diameters_text(section["longest"], section["perpendicular"], section["unit"])
        rows.append(("Largest cross-section", f"{size} on slice {int(section['slice']) + 1}"))
    if findings.get("volume_ml") is not None:
        rows.append(("Estimated tumor volume", f"{findings['volume_ml']:.2f} mL"))
    return rows
