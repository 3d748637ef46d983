"""Tests for the PDF report: read the PDF back with pypdf and check what a reader sees."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest
from pypdf import PdfReader

from brainloc.report import DISCLAIMER, ReportData, build_report


def _synthetic_slice(side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A grey disc ("brain") and the same disc with a red square ("overlay")."""
    yy, xx = np.mgrid[:side, :side]
    disc = ((yy - side / 2) ** 2 + (xx - side / 2) ** 2) < (side * 0.4) ** 2
    scan = np.zeros((side, side, 3), np.uint8)
    scan[disc] = 120
    overlay = scan.copy()
    overlay[40:60, 70:90] = (255, 0, 0)
    return scan, overlay


def _data(**changes) -> ReportData:
    scan, overlay = _synthetic_slice()
    data = ReportData(
        practitioner_name="Dr Ada Lovelace",
        practitioner_category="Neuroradiologist",
        institution="Analytical Hospital",
        case_reference="CASE-0042",
        analysis_id=17,
        analysed_at=datetime(2026, 11, 25, 9, 30),
        issued_at=datetime(2026, 11, 25, 10, 5),
        tumor_probability=0.973,
        threshold=0.5,
        has_tumor=True,
        scan=scan,
        overlay=overlay,
        findings=[("Tumor area", "412 px (95.3 mm²)"), ("Side", "left")],
        notes="Hyperintense lesion in the left frontal lobe.\nFollow-up in 3 months.",
        note_version=2,
        models=["brainloc-classifier v1.0.0", "brainloc-resunet v1.0.0"],
    )
    return replace(data, **changes)


def _text(pdf: bytes) -> tuple[str, int]:
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return " ".join(text.split()), len(reader.pages)


def test_report_contains_everything_a_reader_needs():
    pdf = build_report(_data())
    assert pdf.startswith(b"%PDF")
    text, pages = _text(pdf)
    assert pages == 1
    for expected in (
        "Dr Ada Lovelace",
        "Neuroradiologist",
        "Analytical Hospital",
        "CASE-0042",
        "2026-11-25 10:05",
        "97.3%",
        "TUMOR SUSPECTED",
        "412 px (95.3 mm²)",
        "Hyperintense lesion in the left frontal lobe.",
        "Follow-up in 3 months.",
        "version 2",
        "brainloc-classifier v1.0.0",
        "brainloc-resunet v1.0.0",
        "does not replace",
    ):
        assert expected in text, expected
    assert " ".join(DISCLAIMER.split()[:6]) in text


def test_report_embeds_both_images():
    reader = PdfReader(io.BytesIO(build_report(_data())))
    assert len(reader.pages[0].images) == 2


def test_negative_result_and_missing_notes_are_stated():
    text, _ = _text(build_report(_data(tumor_probability=0.02, has_tumor=False, notes="")))
    assert "No tumor detected" in text
    assert "does not rule out a tumor" in " ".join(text.split())
    assert "No notes recorded." in text
    assert "TUMOR SUSPECTED" not in text


def test_same_data_gives_same_bytes_and_notes_change_them():
    assert build_report(_data()) == build_report(_data())
    assert build_report(_data()) != build_report(_data(notes="Another note."))


def test_user_text_is_escaped_not_interpreted():
    text, _ = _text(build_report(_data(notes="<b>bold?</b> & <unclosed", case_reference="A<B")))
    assert "<b>bold?</b> & <unclosed" in text
    assert "A<B" in text


def test_long_case_spills_onto_more_pages():
    rows = [(str(i), f"{i / 100:.0%}", f"{i * 10} px") for i in range(80)]
    text, pages = _text(build_report(_data(slice_rows=rows)))
    assert pages >= 2
    assert "790 px" in text  # the last row is not lost at a page break


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tumor_probability": 1.5}, "tumor_probability"),
        ({"threshold": 0.0}, "threshold"),
        ({"scan": np.zeros((8, 8), np.uint8)}, "scan"),
        ({"overlay": np.zeros((8, 8, 3), np.float32)}, "overlay"),
    ],
)
def test_bad_input_is_refused_with_a_message(changes, message):
    with pytest.raises(ValueError, match=message):
        build_report(_data(**changes))


def test_names_and_notes_in_other_alphabets_print_as_written():
    # Helvetica, the PDF's built-in font, has none of these letters: they printed as boxes.
    pdf = build_report(
        _data(
            practitioner_name="Dr Łukasz Żółć",
            case_reference="Пациент-7",
            notes="Опухоль слева; όγκος αριστερά.\x0bEnd\x1b.",
        )
    )
    text, _ = _text(pdf)
    assert "Łukasz Żółć" in text and "Пациент-7" in text
    assert "Опухоль слева; όγκος αριστερά." in text
    assert "\x0b" not in text and "\x1b" not in text and "End." in text
    assert b"DejaVuSans" in pdf


def test_long_header_values_wrap_inside_the_page():
    reference = " ".join(f"ACC{number:04d}" for number in range(30))
    pdf = build_report(_data(case_reference=reference, institution="Hospital " * 20))
    reader = PdfReader(io.BytesIO(pdf))
    lines = reader.pages[0].extract_text().splitlines()
    # Every part of the reference is printed, over several lines of the cell.
    holding = [line for line in lines if "ACC00" in line or "ACC002" in line]
    assert len(holding) >= 2
    assert all(f"ACC{number:04d}" in " ".join(lines) for number in range(30))


def _note_line_heights(pdf: bytes, lines: Sequence[str]) -> dict[str, float]:
    """The baseline height on the first page of each text run that is one of ``lines``."""
    heights: dict[str, float] = {}

    def visit(text, cm, tm, _font, _size):
        if text.strip() in lines:  # the text matrix's origin, through the current transform
            heights.setdefault(text.strip(), tm[4] * cm[1] + tm[5] * cm[3] + cm[5])

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return heights


def test_a_note_at_the_length_limit_prints_every_line_and_blank_runs_collapse():
    from db.clinical_notes import MAX_NOTE_CHARS

    lines = [f"line {number:04d}" for number in range(MAX_NOTE_CHARS // 10)]
    note = "\n".join(lines) + "\n"
    assert len(note) == MAX_NOTE_CHARS
    text, pages = _text(build_report(_data(notes=note)))
    positions = [text.find(line) for line in lines]
    assert -1 not in positions and positions == sorted(positions)
    assert pages < 50  # about 60 lines a page
    # Runs of blank lines print as one blank line (they printed as pages of nothing).
    spaced = "\n\nFirst finding" + "\n" * 3000 + "Second finding\n \n\t\n\nThird finding\n\n"
    pdf = build_report(_data(notes=spaced))
    assert pdf == build_report(_data(notes="First finding\n\nSecond finding\n\nThird finding"))
    text, pages = _text(pdf)
    assert pages <= 2 and "First finding Second finding Third finding" in text


def test_note_lines_and_a_blank_line_keep_their_spacing():
    lines = ["First line", "Second line", "After a blank line"]
    note = f"{lines[0]}\n{lines[1]}\n\n{lines[2]}"
    heights = _note_line_heights(build_report(_data(notes=note)), lines)
    first, second, third = (heights[line] for line in lines)
    leading = first - second
    assert leading == pytest.approx(12)  # the body style's leading, as one paragraph had
    assert second - third == pytest.approx(2 * leading)


def test_no_heading_is_left_at_a_page_foot_and_the_closing_disclaimer_is_never_split():
    # Notes of every length from a few lines to over a page move the end of the report across
    # a page break: a heading must go with what follows it (a "Models" heading alone at the
    # foot of page 1 happened with a 2-line note), and the closing disclaimer stays whole.
    findings = [(f"Finding {k}", "value") for k in range(6)]
    closing = " ".join(DISCLAIMER.split())
    for lines in range(2, 60, 2):
        notes = "\n".join(f"Line {k} of the note." for k in range(lines))
        pdf = build_report(_data(notes=notes, findings=findings))
        pages = [" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(pdf)).pages]
        for heading, body in (("Notes", "Practitioner's notes"), ("Models", "brainloc-classifier")):
            together = any(f"{heading} " in text and body in text for text in pages)
            assert together, f"{lines} note lines: the {heading} heading apart from its text"
        assert closing in pages[-1], f"{lines} note lines: the closing disclaimer was split"
