"""Correcting the record in a real browser: a practitioner analyses a slice under a mistyped
case reference, corrects it, then marks the analysis entered in error; History leaves it out
and the PDF issued afterwards says both. SQLite only: the database side of corrections runs on
both databases in tests/db/test_clinical_corrections.py.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.e2e.browser import UI_TIMEOUT_MS, sign_in, wait_idle
from tests.e2e.test_workflow_browser import (
    ANALYSIS_TIMEOUT_MS,
    PASSWORD,
    _add_practitioners,
    _go,
    _models_dir,
    _tumor_slice,
)

from playwright.sync_api import expect  # isort: skip


@pytest.mark.sqlite_only
def test_a_reference_is_corrected_and_an_analysis_marked_entered_in_error(
    app_server, browser, tmp_path, empty_database_url
):
    models = _models_dir()
    scan = _tumor_slice(tmp_path)
    _add_practitioners(empty_database_url, "carol")
    server = app_server(BRAINLOC_MODELS_DIR=str(models), DATABASE_URL=empty_database_url)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url)
    sign_in(page, "carol", PASSWORD)
    _go(page, "Analyze")
    page.locator("input[type='file']").set_input_files(str(scan))
    wait_idle(page)
    page.get_by_label("Case reference").fill("E2E-TYPO")
    page.get_by_role("button", name="Analyze", exact=True).click()
    expect(page.get_by_text("Result: E2E-TYPO")).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)
    page.get_by_role("link", name="Open the case to add notes and issue a report").click()
    expect(page.get_by_role("button", name="Save note")).to_be_visible(timeout=UI_TIMEOUT_MS)
    wait_idle(page)

    # Correct the reference: the heading follows, the earlier reference is listed.
    page.get_by_text("Correct the record", exact=True).click()
    wait_idle(page)
    page.get_by_label("Corrected case reference").fill("E2E-RIGHT")
    wait_idle(page)
    page.get_by_role("button", name="Save the corrected reference").click()
    expect(page.get_by_text("Case reference corrected (version 2).")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(page.get_by_role("heading", name="E2E-RIGHT")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Version 1 \(at upload\).*E2E-TYPO"))).to_be_visible()

    # Mark it entered in error: a reason, then the confirmation.
    page.get_by_label("Reason (required)").fill("scan of another patient")
    wait_idle(page)
    page.get_by_role("button", name="Mark as entered in error…").click()
    page.get_by_role("button", name="Yes, mark it entered in error").click()
    expect(page.get_by_text(re.compile("ENTERED IN ERROR · marked by"))).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(page.get_by_role("button", name="Save note")).to_have_count(0)

    # The report issued now says both.
    page.get_by_role("button", name="Issue a new PDF report").click()
    report_button = page.get_by_role("button", name=re.compile(r"Report #\d+"))
    expect(report_button).to_be_visible(timeout=UI_TIMEOUT_MS)
    with page.expect_download(timeout=UI_TIMEOUT_MS) as download:
        report_button.click()
    pdf = Path(download.value.path()).read_bytes()
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert "ENTERED IN ERROR" in text and "scan of another patient" in text
    assert "E2E-RIGHT" in text and "E2E-TYPO" in text

    # History leaves it out by default.
    _go(page, "History")
    expect(page.get_by_text("No analyses match these filters.")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    context.close()
