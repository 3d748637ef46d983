"""PDF report of one analysis, built with reportlab.

A pure function: :func:`build_report` takes a :class:`ReportData` (plain values
and uint8 image arrays) and returns the PDF as bytes. It reads no database and
no files, so the case page, the demo and the tests all produce the same
document. The PDF is generated with reportlab's ``invariant`` mode (fixed
document id and creation stamp), so the same data always gives the same bytes;
the date printed on the report is the one passed in.

Issued reports are stored by ``db.clinical`` as bytes and never regenerated.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from brainloc.findings_text import probability_text
from brainloc.results import NEGATIVE_CAUTION

#: Printed on every report, in a box under the title and again in the footer.
DISCLAIMER = (
    "BrainLoc is a decision-support tool for research and clinical assistance. "
    "It supports, and does not replace, the judgement of a qualified specialist. "
    "Every result must be reviewed by a specialist before any clinical decision."
)

_IMAGE_SIDE = 78 * mm
_ACCENT = colors.HexColor("#1f4e79")


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, as plain values.

    Attributes:
        practitioner_name, practitioner_category, institution: the author.
        case_reference: the practitioner's case reference (free text), the current one.
        reference_corrections: when the case reference was corrected, one line per
            correction saying when and from what ("2026-12-08 09:15 UTC, from “CAS-1”"),
            newest first; empty when it never was.
        entered_in_error: for an analysis its owner marked entered in error, when and why
            (printed under "ENTERED IN ERROR" in red at the top, and on every page's foot);
            "" for any other.
        analysis_id: the database id of the analysis, printed for traceability.
        analysed_at: when the analysis was made.
        scan_date: the day the scan was made ("YYYY-MM-DD", DICOM header), or "" when unknown.
        issued_at: when the report is issued (printed as the report date).
        tumor_probability: classifier output in [0, 1] (for a case: the maximum).
        threshold: the decision threshold in (0, 1).
        has_tumor: the decision.
        scan: uint8 array (H, W, 3), the displayed slice.
        overlay: uint8 array (H, W, 3), the same slice with the tumor drawn.
        overlay_caption: what the overlay shows, printed under it.
        findings: (label, value) rows, already formatted for reading.
        slice_rows: for a case, (slice, probability, area) rows; empty for one slice.
        slice_note: a footnote printed under the slice table ("" for none).
        notes: the current note text ("" when none).
        note_version: the note version printed (None when there is no note).
        models: model labels, e.g. "brainloc-classifier v1.0.0".
        sequences_note: what the reader must know of the input: which MRI sequences were
            really present, if not all three, how they were combined, slices missing from
            the series, and every other note the screen shows about the input (a rescale,
            files left out).
        probability_label: how the probability is named ("Highest slice tumor probability"
            for a case).
        comparison_title: for a follow-up report, which analysis is the baseline ("" for none).
        comparison_rows: (measure, baseline, this analysis, change) rows
            (:mod:`brainloc.followup`).
        comparison_notes: what the reader must know about the comparison.
    """

    practitioner_name: str
    practitioner_category: str
    institution: str
    case_reference: str
    analysis_id: int
    analysed_at: datetime
    issued_at: datetime
    tumor_probability: float
    threshold: float
    has_tumor: bool
    scan: np.ndarray
    overlay: np.ndarray
    overlay_caption: str = "Scan with detected tumor region (red)"
    findings: Sequence[tuple[str, str]] = ()
    slice_rows: Sequence[tuple[str, str, str]] = ()
    slice_note: str = ""
    notes: str = ""
    note_version: int | None = None
    models: Sequence[str] = field(default_factory=tuple)
    sequences_note: str = ""
    probability_label: str = "Tumor probability"
    scan_date: str = ""
    comparison_title: str = ""
    comparison_rows: Sequence[tuple[str, str, str, str]] = ()
    comparison_notes: Sequence[str] = ()
    reference_corrections: Sequence[str] = ()
    entered_in_error: str = ""


#: The warning a report of an analysis marked entered in error carries, above all else.
ENTERED_IN_ERROR = "ENTERED IN ERROR"
_ERROR_RED = colors.HexColor("#b00020")


def _check(data: ReportData) -> None:
    if not 0.0 <= data.tumor_probability <= 1.0:
        raise ValueError(f"tumor_probability must be in [0, 1], got {data.tumor_probability}")
    if not 0.0 < data.threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {data.threshold}")
    for name in ("scan", "overlay"):
        array = np.asarray(getattr(data, name))
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(
                f"{name} must be a uint8 (H, W, 3) array, got {array.dtype} {array.shape}"
            )


def _png_flowable(array: np.ndarray) -> Image:
    """An RGB array as a lossless PNG image flowable, scaled to fit the column."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(array), mode="RGB").save(buffer, format="PNG")
    buffer.seek(0)
    height, width = array.shape[:2]
    scale = _IMAGE_SIDE / max(height, width)
    return Image(buffer, width=width * scale, height=height * scale)


#: DejaVu Sans, shipped in ``brainloc/fonts`` (Bitstream Vera licence, see LICENSE.txt there):
#: the PDF's built-in Helvetica has no Ł, Ż, Cyrillic or Greek letters and prints them as
#: boxes, and shipping the font keeps a report's bytes the same on every machine.
FONT = "DejaVuSans"
BOLD = "DejaVuSans-Bold"
_FONT_DIR = Path(__file__).resolve().parent / "fonts"


@functools.cache
def _register_fonts() -> None:
    for name, file in ((FONT, "DejaVuSans.ttf"), (BOLD, "DejaVuSans-Bold.ttf")):
        pdfmetrics.registerFont(TTFont(name, str(_FONT_DIR / file)))
    pdfmetrics.registerFont(TTFont(f"{FONT}-Oblique", str(_FONT_DIR / "DejaVuSans-Oblique.ttf")))
    pdfmetrics.registerFontFamily(
        FONT, normal=FONT, bold=BOLD, italic=f"{FONT}-Oblique", boldItalic=BOLD
    )


def _printable(text: str) -> str:
    """``text`` without control characters (they print as boxes), line breaks and tabs kept."""
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )


def _paragraph_text(text: str) -> str:
    """Escape user text for reportlab's mini-markup and keep its line breaks."""
    return escape(_printable(text)).replace("\n", "<br/>")


def _note_flowables(notes: str, style: ParagraphStyle) -> list[Paragraph | Spacer]:
    """The note as one paragraph per line, spaced as one paragraph with line breaks would be
    (``style``'s leading; space before the first line only), a blank line as a blank line.
    A run of blank lines prints as one, and blank lines at the ends are dropped.

    One paragraph holding a whole note at the length limit was split again at every page
    break: 20,000 characters took about a minute to lay out, and blank lines filled hundreds
    of pages."""
    line_style = ParagraphStyle(f"{style.name}-line", parent=style, spaceBefore=0)
    flowables: list[Paragraph | Spacer] = []
    blank = False
    for line in _printable(notes).split("\n"):
        if not line.strip():
            blank = bool(flowables)
            continue
        if blank:
            flowables.append(Spacer(1, style.leading))
            blank = False
        text = _paragraph_text(line)
        flowables.append(Paragraph(text, line_style if flowables else style))
    return flowables


def _styles() -> dict[str, ParagraphStyle]:
    _register_fonts()
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName=FONT)
    return {
        "title": ParagraphStyle(
            "title", parent=base["Title"], fontName=BOLD, textColor=_ACCENT, spaceAfter=4
        ),
        # keepWithNext: a heading never ends a page without the first lines of its section.
        "h2": ParagraphStyle(
            "h2",
            parent=base["Heading2"],
            fontName=BOLD,
            textColor=_ACCENT,
            spaceBefore=8,
            keepWithNext=1,
        ),
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=8, leading=10),
        "cell": ParagraphStyle("cell", parent=body, fontSize=9, leading=11),
        "error_title": ParagraphStyle(
            "error_title",
            parent=base["Title"],
            fontName=BOLD,
            fontSize=26,
            leading=32,
            textColor=_ERROR_RED,
            spaceBefore=4,
        ),
        "error_box": ParagraphStyle(
            "error_box",
            parent=body,
            fontName=BOLD,
            textColor=_ERROR_RED,
            borderColor=_ERROR_RED,
            borderWidth=1.5,
            borderPadding=6,
            backColor=colors.HexColor("#fdecee"),
            spaceAfter=10,
        ),
        "box": ParagraphStyle(
            "box",
            parent=body,
            borderColor=_ACCENT,
            borderWidth=0.8,
            borderPadding=6,
            backColor=colors.HexColor("#eef3f8"),
            spaceBefore=6,
            spaceAfter=10,
        ),
    }


def _grid(rows: Sequence[Sequence[object]], widths: Sequence[float], header: bool) -> Table:
    """A table; text cells below the header row wrap (a long case reference, institution or
    name stays on the page)."""
    cell = _styles()["cell"]
    table = Table(
        [
            [
                Paragraph(_paragraph_text(value), cell)
                if isinstance(value, str) and (index > 0 or not header)
                else value
                for value in row
            ]
            for index, row in enumerate(rows)
        ],
        colWidths=list(widths),
        hAlign="LEFT",
        repeatRows=1 if header else 0,
    )
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 0), (-1, -1), FONT),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
    ]
    if header:
        style += [
            ("BACKGROUND", (0, 0), (-1, 0), _ACCENT),
            ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ]
    else:
        style.append(("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#eef3f8")))
    table.setStyle(TableStyle(style))
    return table


def _decision_text(data: ReportData) -> str:
    verdict = "TUMOR SUSPECTED" if data.has_tumor else "No tumor detected"
    return (
        f"{data.probability_label}: {probability_text(data.tumor_probability)} "
        f"(decision threshold {data.threshold:.0%}) - Decision: {verdict}"
    )


def _footer(canvas, doc, *, in_error: bool = False) -> None:  # noqa: ANN001 - reportlab
    canvas.saveState()
    canvas.setFont(FONT, 7)
    canvas.setFillColor(colors.grey)
    canvas.drawString(15 * mm, 10 * mm, "Supports, does not replace, a specialist's judgement.")
    canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, f"BrainLoc report - page {doc.page}")
    if in_error:
        # On every page, so that no page of the report can be read without it.
        canvas.setFont(BOLD, 11)
        canvas.setFillColor(_ERROR_RED)
        canvas.drawCentredString(A4[0] / 2, 5 * mm, ENTERED_IN_ERROR)
    canvas.restoreState()


def build_report(data: ReportData) -> bytes:
    """Render the report of one analysis.

    Args:
        data: the report's content; images are uint8 (H, W, 3).

    Returns:
        The PDF document as bytes (identical bytes for identical data).

    Raises:
        ValueError: a probability, threshold or image is out of range.
    """
    _check(data)
    styles = _styles()
    story: list = [Paragraph("BrainLoc - MRI tumor analysis report", styles["title"])]
    if data.entered_in_error:
        story += [
            Paragraph(ENTERED_IN_ERROR, styles["error_title"]),
            Paragraph(_paragraph_text(data.entered_in_error), styles["error_box"]),
        ]
    story.append(Paragraph(_paragraph_text(DISCLAIMER), styles["box"]))
    header_rows = [
        ("Practitioner", data.practitioner_name),
        ("Category", data.practitioner_category),
        ("Institution", data.institution),
        ("Case reference", data.case_reference or "-"),
        *(
            [("Reference corrected", "\n".join(data.reference_corrections))]
            if data.reference_corrections
            else []
        ),
        ("Analysis", f"#{data.analysis_id}, {data.analysed_at:%Y-%m-%d %H:%M} UTC"),
        *([("Scan date", data.scan_date)] if data.scan_date else []),
        ("Report date", f"{data.issued_at:%Y-%m-%d %H:%M} UTC"),
    ]
    story.append(_grid(header_rows, (40 * mm, 130 * mm), header=False))
    story.append(Paragraph("Result", styles["h2"]))
    story.append(Paragraph(f"<b>{escape(_decision_text(data))}</b>", styles["body"]))
    if not data.has_tumor:
        story.append(Paragraph(escape(NEGATIVE_CAUTION), styles["body"]))
    if data.sequences_note:
        story.append(Paragraph(_paragraph_text(data.sequences_note), styles["small"]))
    images = Table(
        [
            [_png_flowable(data.scan), _png_flowable(data.overlay)],
            ["Scan", data.overlay_caption],
        ],
        colWidths=[_IMAGE_SIDE + 6 * mm] * 2,
        hAlign="LEFT",
    )
    images.setStyle(
        TableStyle(
            [
                ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                ("FONTNAME", (0, 1), (-1, 1), FONT),
                ("FONTSIZE", (0, 1), (-1, 1), 8),
            ]
        )
    )
    story += [Spacer(1, 4 * mm), images]
    if data.findings:
        story.append(
            KeepTogether(
                [
                    Paragraph("Findings", styles["h2"]),
                    _grid(data.findings, (60 * mm, 110 * mm), header=False),
                ]
            )
        )
    if data.comparison_rows:
        rows = [("Measure", "Baseline", "This analysis", "Change"), *data.comparison_rows]
        story.append(
            KeepTogether(
                [
                    Paragraph("Compared with an earlier scan", styles["h2"]),
                    Paragraph(_paragraph_text(data.comparison_title), styles["body"]),
                    _grid(rows, (52 * mm, 48 * mm, 48 * mm, 22 * mm), header=True),
                    *(
                        Paragraph(_paragraph_text(note), styles["small"])
                        for note in data.comparison_notes
                    ),
                ]
            )
        )
    story.append(Paragraph("Notes", styles["h2"]))
    if data.notes.strip():
        version = f" (version {data.note_version})" if data.note_version is not None else ""
        story.append(Paragraph(f"<i>Practitioner's notes{version}:</i>", styles["small"]))
        story += _note_flowables(data.notes, styles["body"])
    else:
        story.append(Paragraph("No notes recorded.", styles["body"]))
    if data.slice_rows:
        story.append(Paragraph("Slices", styles["h2"]))
        rows = [("Slice", "Tumor probability", "Tumor area"), *data.slice_rows]
        story.append(_grid(rows, (30 * mm, 50 * mm, 50 * mm), header=True))
        if data.slice_note:
            story.append(Paragraph(_paragraph_text(data.slice_note), styles["small"]))
    story.append(Paragraph("Models", styles["h2"]))
    model_text = ", ".join(data.models) if data.models else "not recorded"
    story.append(Paragraph(_paragraph_text(model_text), styles["body"]))
    # Whole, not its last line alone on a new page.
    story.append(KeepTogether([Paragraph(_paragraph_text(DISCLAIMER), styles["box"])]))

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=("ENTERED IN ERROR - " if data.entered_in_error else "")
        + f"BrainLoc report - {data.case_reference or data.analysis_id}",
        author=data.practitioner_name,
        invariant=1,
    )
    footer = functools.partial(_footer, in_error=bool(data.entered_in_error))
    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
