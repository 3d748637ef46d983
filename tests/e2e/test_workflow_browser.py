"""A practitioner's whole day in a real browser, and a second one who cannot see it.

Sign in -> upload a tumor slice restored from ../shared/lgg -> probability and overlay appear
-> add a note, edit it -> the history lists the case -> issue and download the PDF, whose text
holds the note and the probability -> sign out. A second practitioner, in another browser
context, cannot reach the case by URL or by any widget. The day runs twice: with the database
in the data directory (SQLite) and on a PostgreSQL server (``DATABASE_URL``).

Runs with the shipped models (skipped until they exist). ``BRAINLOC_E2E_MODELS_DIR`` points
the server at another models folder in the shipped format, to run the flow against them.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from pypdf import PdfReader
from sqlmodel import Session

from brainloc.accounts import hash_password
from brainloc.model_meta import DEFAULT_MODELS_DIR, models_available
from brainloc.scan_readers import read_nifti
from db.engine import make_engine
from db.migrate import upgrade_head
from db.models import User
from db.users import get_category_by_code, save_user
from tests.brainloc.scan_factory import encode_study
from tests.e2e.browser import (
    REPO,
    UI_TIMEOUT_MS,
    outside_requests,
    record_requests,
    sign_in,
    sign_out,
    wait_for_sign_in_cookie,
    wait_idle,
)

from playwright.sync_api import Page, expect  # isort: skip

SHARED_LGG = REPO.parent / "shared" / "lgg"
#: A patient of the test split (training/splits.json) with several tumor slices.
LGG_CASE = "TCGA_CS_4944_20010208"
PASSWORD = "a-long-test-password-1"
#: Analysing with the real models on a loaded 2-core machine can take a while.
ANALYSIS_TIMEOUT_MS = 120_000


def _models_dir() -> Path:
    override = os.environ.get("BRAINLOC_E2E_MODELS_DIR")
    models = Path(override) if override else DEFAULT_MODELS_DIR
    if not models_available(models):
        pytest.skip(f"the trained models are not installed in {models} yet")
    return models


def _tumor_slice(tmp_path: Path) -> Path:
    """Restore one LGG patient and return its slice with the largest tumor."""
    if not (SHARED_LGG / "restore.py").is_file():
        pytest.skip(f"the LGG development slices are not at {SHARED_LGG}")
    out = tmp_path / "lgg"
    subprocess.run(
        [sys.executable, str(SHARED_LGG / "restore.py"), str(out), "--only", LGG_CASE],
        check=True,
        capture_output=True,
        timeout=300,
    )
    masks = sorted((out / "kaggle_3m" / LGG_CASE).glob("*_mask.tif"))
    best = max(masks, key=lambda path: int(np.count_nonzero(tifffile.imread(path))))
    return best.with_name(best.name.replace("_mask.tif", ".tif"))


def _add_practitioners(url: str, *usernames: str) -> None:
    upgrade_head(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            category = get_category_by_code(session, code="neuroradiologist")
            for username in usernames:
                save_user(
                    session,
                    user=User(
                        username=username,
                        full_name=f"Dr {username.title()} Example",
                        email=f"{username}@clinic.example",
                        password_hash=hash_password(PASSWORD, rounds=4),
                        status="approved",
                        category_id=category.id,
                        licence_number="REG-1",
                        institution="Example University Hospital",
                    ),
                )
            session.commit()
    finally:
        engine.dispose()


def _go(page: Page, link: str) -> None:
    # A menu click made while a rerun is still pending (after a page load, the cookie
    # component reruns the script) can be overtaken by that rerun: click once the app is idle.
    wait_idle(page)
    page.get_by_role("link", name=link, exact=True).click()
    # Every page's title is its menu name: the page really changed before the test goes on.
    expect(page.get_by_role("heading", name=link, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    # A widget used before the page's rerun has finished can lose its value.
    wait_idle(page)


def _save_note(page: Page, text: str, version: int) -> None:
    page.get_by_label("Note", exact=True).fill(text)
    page.get_by_role("button", name="Save note").click()
    expect(page.get_by_text(f"Note saved as version {version}.")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )


def test_a_practitioners_day_and_a_colleague_who_cannot_see_it(
    app_server, browser, tmp_path, empty_database_url
):
    # Run on SQLite (the data directory's file) and on PostgreSQL (DATABASE_URL).
    models = _models_dir()
    scan = _tumor_slice(tmp_path)
    _add_practitioners(empty_database_url, "alice", "bob")
    server = app_server(BRAINLOC_MODELS_DIR=str(models), DATABASE_URL=empty_database_url)
    alice = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    requested = record_requests(alice)
    page = alice.new_page()

    # Sign in and analyse one tumor slice.
    page.goto(server.url)
    sign_in(page, "alice", PASSWORD)
    _go(page, "Analyze")
    page.locator("input[type='file']").set_input_files(str(scan))
    wait_idle(page)
    page.get_by_label("Case reference").fill("E2E-CASE-1")
    page.get_by_role("button", name="Analyze", exact=True).click()
    verdict = page.get_by_text("Tumor suspected")
    expect(verdict).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)
    expect(page.get_by_text("Detected tumor in red, diameters in yellow")).to_be_visible()
    expect(page.get_by_text("Diameters (longest × perpendicular)")).to_be_visible()
    expect(page.locator("img[src*='media']")).to_have_count(2)
    stated = page.get_by_text(re.compile(r"Tumor probability [<>]?\d+\.\d%")).first.inner_text()
    probability = re.search(r"Tumor probability ([<>]?\d+\.\d)%", stated).group(1)

    # Open the case, write a note and edit it.
    page.get_by_role("link", name="Open the case to add notes and issue a report").click()
    expect(page.get_by_role("button", name="Save note")).to_be_visible(timeout=UI_TIMEOUT_MS)
    case_url = page.url
    assert re.search(r"/case\?id=\d+$", case_url), case_url
    _save_note(page, "Left frontal FLAIR hyperintensity.", 1)
    final_note = "Left frontal FLAIR hyperintensity, enhancing rim; MDT on Friday."
    _save_note(page, final_note, 2)

    # The whole case as NIfTI: BrainLoc's own reader gives back the analysed FLAIR slice.
    page.get_by_role("button", name="Prepare the case as NIfTI").click()
    nifti_button = page.get_by_role("button", name="Download the case (NIfTI)")
    expect(nifti_button).to_be_visible(timeout=UI_TIMEOUT_MS)
    with page.expect_download(timeout=UI_TIMEOUT_MS) as download:
        nifti_button.click()
    with zipfile.ZipFile(download.value.path()) as exported:
        flair = next(name for name in exported.namelist() if name.endswith("_flair.nii.gz"))
        volume = read_nifti(gzip.decompress(exported.read(flair)), flair)
    assert download.value.suggested_filename.endswith("_E2E-CASE-1_nifti.zip")
    assert np.array_equal(volume.slices[0, ..., 0], tifffile.imread(scan)[..., 1])

    # The history lists the case.
    _go(page, "History")
    expect(page.get_by_text("1 analysis(es) match.")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("combobox", name="Open a case").click()
    page.get_by_role("option", name=re.compile("E2E-CASE-1")).click()
    page.get_by_role("link", name=re.compile("Open E2E-CASE-1")).click()

    # Issue the report and download it: the note and the probability are in its text.
    page.get_by_role("button", name="Issue a new PDF report").click()
    report_button = page.get_by_role("button", name=re.compile(r"Report #\d+"))
    expect(report_button).to_be_visible(timeout=UI_TIMEOUT_MS)
    with page.expect_download(timeout=UI_TIMEOUT_MS) as download:
        report_button.click()
    pdf = Path(download.value.path()).read_bytes()
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert final_note in text
    assert f"{probability}%" in text
    assert "E2E-CASE-1" in text and "Dr Alice Example" in text
    assert "Diameters (longest × perpendicular)" in text and "diameters (yellow)" in text
    # The same slice uploaded one sequence at a time (three grey TIFFs) gives the same result,
    # with the co-registration caveat.
    _go(page, "Analyze")
    page.get_by_text("One upload per sequence", exact=True).click()
    wait_idle(page)
    uploads = page.locator("input[type='file']")
    expect(uploads).to_have_count(3)
    image = tifffile.imread(scan)
    for channel in range(3):
        part = tmp_path / f"sequence-{channel}.tif"
        tifffile.imwrite(part, np.ascontiguousarray(image[..., channel]))
        uploads.nth(channel).set_input_files(str(part))
    wait_idle(page)
    page.get_by_label("Case reference").fill("E2E-CASE-2")
    page.get_by_role("button", name="Analyze", exact=True).click()
    expect(page.get_by_text("Result: E2E-CASE-2")).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)
    # The result's caveat (the radio's caption also says "co-registered", so match the note).
    expect(page.get_by_text(re.compile("came as separate series and were"))).to_be_visible()
    expect(page.get_by_text(f"Tumor probability {probability}%").first).to_be_visible()
    # Its case compared with the first: TIFF slices carry no pixel spacing, so the diameters
    # (in px) are shown side by side without a change, and the page says why.
    page.get_by_role("link", name="Open the case to add notes and issue a report").click()
    expect(page.get_by_role("button", name="Save note")).to_be_visible(timeout=UI_TIMEOUT_MS)
    wait_idle(page)
    page.get_by_text("Compare with an earlier scan").click()
    wait_idle(page)
    page.get_by_role("combobox", name="Baseline (the earlier scan of").click()
    page.get_by_role("option", name=re.compile("E2E-CASE-1")).click()
    expect(page.get_by_text(re.compile("cannot be compared between two scans"))).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(page.get_by_text(re.compile(r"px \(slice 1\)")).first).to_be_visible()

    # The same slice as a study exported from a PACS: a ZIP of DICOM series without file
    # extensions (its three sequences, a diffusion series) and a file that is not an image.
    # The three are recognised by their names and analysed as one case; the post-contrast
    # series, at half the matrix, is resampled onto the FLAIR slice by its header.
    _go(page, "Analyze")
    page.get_by_text("One upload", exact=True).click()
    wait_idle(page)
    archive = tmp_path / "export.zip"
    grey = image[np.newaxis].astype(np.uint16) * 16  # one slice per series
    half = grey[..., 2].reshape(1, 128, 2, 128, 2).mean(axis=(2, 4)).astype(np.uint16)
    series = {"AX T1": grey[..., 0], "AX T2 FLAIR": grey[..., 1], "AX T1 +C": half}
    geometry = {name: {"spacing": (0.9, 0.9)} for name in series}
    geometry["AX T1 +C"] = {"spacing": (1.8, 1.8), "position": (0.45, 0.45, 0.0)}
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, data in encode_study({**series, "DWI": grey[..., 1]}, geometry).items():
            bundle.writestr(f"export/{name}", data)
        bundle.writestr("export/README.TXT", "exported by the PACS")
    page.locator("input[type='file']").set_input_files(str(archive))
    wait_idle(page)
    page.get_by_label("Case reference").fill("E2E-CASE-3")
    page.get_by_role("button", name="Analyze", exact=True).click()
    expect(page.get_by_text("Result: E2E-CASE-3")).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)
    expect(page.get_by_text("export.zip: 4 image file(s) read; 1 other file(s)")).to_be_visible()
    expect(
        page.get_by_text(
            "sequences recognised from the series' names: pre-contrast 'AX T1', FLAIR "
            "'AX T2 FLAIR', post-contrast 'AX T1 +C'; not analysed: 'DWI'"
        )
    ).to_be_visible()
    expect(page.get_by_text(re.compile("^post-contrast lay on other slices"))).to_be_visible()
    expect(page.get_by_text("Only FLAIR present", exact=False)).to_have_count(0)
    expect(page.get_by_text("Tumor probability", exact=False).first).to_be_visible()

    # The same study with its series picked by hand: the page lists them, with those named as
    # a sequence chosen already, and the choice goes with the case.
    _go(page, "Analyze")
    page.get_by_text("A study: choose its series", exact=True).click()
    wait_idle(page)
    page.locator("input[type='file']").set_input_files(str(archive))
    expect(page.get_by_text("4 series found.", exact=False)).to_be_visible(timeout=UI_TIMEOUT_MS)
    wait_idle(page)
    flair = page.get_by_role("combobox", name="FLAIR series")
    expect(flair).to_have_value("'AX T2 FLAIR' · axial · 1 slice(s) of 256×256")
    page.get_by_label("Case reference").fill("E2E-CASE-4")
    page.get_by_role("button", name="Analyze", exact=True).click()
    expect(page.get_by_text("Result: E2E-CASE-4")).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)
    expect(
        page.get_by_text(
            "series chosen by the user: pre-contrast 'AX T1', FLAIR 'AX T2 FLAIR', "
            "post-contrast 'AX T1 +C'"
        )
    ).to_be_visible()

    # Patient work never phones home: every request of the whole session, the tab's icon
    # included, went to this server (or stayed in the browser).
    outside = outside_requests(requested, server)
    assert len(requested) > 20 and not outside, outside
    sign_out(page)

    # A colleague in another browser cannot reach the case by URL or by any widget.
    bob = browser.new_context(viewport={"width": 1400, "height": 1000})
    other = bob.new_page()
    other.goto(server.url)
    sign_in(other, "bob", PASSWORD)
    expect(other.get_by_role("link", name="History", exact=True)).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    wait_for_sign_in_cookie(bob)
    other.goto(case_url)
    expect(other.get_by_text("This case was not found among your analyses.")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(other.get_by_text("E2E-CASE-1")).to_have_count(0)
    expect(other.locator("img[src*='media']")).to_have_count(0)
    expect(other.get_by_label("Note", exact=True)).to_have_count(0)
    _go(other, "History")
    expect(other.get_by_text("No analyses match these filters.")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    _go(other, "Recent activity")
    expect(other.get_by_text("Nothing yet.", exact=False)).to_be_visible(timeout=UI_TIMEOUT_MS)
    _go(other, "Case")
    expect(other.get_by_text("You have no analyses yet.", exact=False)).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(other.get_by_text("E2E-CASE-1")).to_have_count(0)
    # The model card states where a negative call is least reliable, from the shipped metadata.
    _go(other, "Model card")
    expect(other.get_by_text("least reliable where a small lesion could be")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(other.locator("[data-testid='stDataFrame']")).to_have_count(1)
    alice.close()
    bob.close()
