"""AppTest of the analyze page: upload through file_uploader, result shown, saved for its owner."""

from __future__ import annotations

import re

import numpy as np
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from brainloc.settings import get_settings
from db import clinical
from db.engine import get_engine
from tests.brainloc.scan_factory import encode_tiff, synthetic_slice, tumor_like_slice
from tests.pages.workflow_fixtures import *  # noqa: F403 - fixtures
from tests.pages.workflow_fixtures import REPO_ROOT, clear_png, open_page, tumor_png


def _analyses(clinic, owner_id):
    with Session(get_engine(clinic.settings.database_url)) as session:
        return clinical.list_analyses(session, owner_id=owner_id)


def _upload(at, files, reference):
    at.file_uploader(key="analyze_files").set_value(
        [(name, data, "application/octet-stream") for name, data in files]
    )
    at.text_input(key="analyze_case_ref").set_value(reference)
    return at.button(key="analyze_run").click().run()


def _texts(elements) -> str:
    """The elements' text as shown: Markdown escapes (text from files, ui.markdown) undone."""
    return re.sub(r"\\(.)", r"\1", _markdown(elements))


def _markdown(elements) -> str:
    return " | ".join(str(element.value) for element in elements)


def _clear_then_tumor() -> np.ndarray:
    """Two 64 x 64 slices of one case: a clear one, then one the tiny models call tumor."""
    return np.stack([synthetic_slice((64, 64), seed=1), tumor_like_slice((64, 64), (20, 20, 16))])


def test_a_tumor_slice_shows_probability_decision_images_and_is_saved(clinic):
    at = _upload(open_page("analyze.py", clinic.alice), [("tumor.png", tumor_png())], "CASE-A1")
    assert not at.exception
    assert "Tumor suspected" in _texts(at.error)
    assert len(at.get("plotly_chart")) == 1  # the gauge (one slice: no case chart)
    assert len(at.get("image")) == 2  # the scan beside the overlay
    assert "Tumor area" in at.table[0].value.to_string()
    saved = _analyses(clinic, clinic.alice)
    assert [a.case_reference for a in saved] == ["CASE-A1"]
    assert saved[0].has_tumor and saved[0].classifier_name == "tiny-classifier"
    assert _analyses(clinic, clinic.bob) == []
    assert at.get("page_link")[0].proto.page.endswith("case")


def test_a_clear_slice_says_no_tumor(clinic):
    at = _upload(open_page("analyze.py", clinic.alice), [("clear.png", clear_png())], "CASE-C")
    assert not at.exception and not at.error
    assert "No tumor detected" in _texts(at.success)
    assert "does not rule out a tumor" in _texts(at.warning)
    assert not _analyses(clinic, clinic.alice)[0].has_tumor


def test_a_bad_file_shows_its_message_and_nothing_is_saved(clinic):
    files = [("tumor.png", tumor_png()), ("report.png", b"%PDF-1.4 not an image")]
    at = _upload(open_page("analyze.py", clinic.alice), files, "CASE-BAD")
    assert not at.exception
    message = _texts(at.error)
    assert "Nothing was saved" in message and "report.png" in message
    assert _analyses(clinic, clinic.alice) == []


def test_a_missing_case_reference_is_refused_before_analysis(clinic):
    at = _upload(open_page("analyze.py", clinic.alice), [("tumor.png", tumor_png())], "  ")
    assert "case reference" in _texts(at.error)
    assert _analyses(clinic, clinic.alice) == []


def test_a_multi_page_tiff_and_a_slice_form_one_case_with_chart_and_slider(clinic):
    stack = _clear_then_tumor()
    files = [("case.tif", encode_tiff(stack)), ("extra.png", clear_png(64))]
    at = _upload(open_page("analyze.py", clinic.alice), files, "CASE-3")
    assert not at.exception
    (saved,) = _analyses(clinic, clinic.alice)
    assert saved.slice_count == 3 and saved.has_tumor
    case_key = f"analyze_{saved.id}"
    slider = at.slider(key=f"{case_key}_slice")
    assert slider.value == 2  # opens on the slice with the largest tumor (numbered from 1)
    assert len(at.get("plotly_chart")) == 2  # gauge and per-slice chart
    at = slider.set_value(1).run()
    assert not at.exception
    assert "none detected" in at.table[-1].value.to_string()


def test_overlay_controls_and_gradcam_rerender_without_error(clinic):
    at = _upload(open_page("analyze.py", clinic.alice), [("tumor.png", tumor_png())], "CASE-O")
    key = f"analyze_{_analyses(clinic, clinic.alice)[0].id}"
    at.slider(key=f"{key}_opacity").set_value(1.0)
    at.radio(key=f"{key}_style").set_value("outline")
    at.selectbox(key=f"{key}_sequence").set_value("post-contrast")
    at = at.toggle(key=f"{key}_auto_window").set_value(False).run()
    at.slider(key=f"{key}_window").set_value((10, 200))
    at = at.toggle(key=f"{key}_gradcam").set_value(True).run()
    assert not at.exception
    assert "with Grad-CAM" in str(at.get("image")[1].proto)
    at = at.toggle(key=f"{key}_show").set_value(False).run()
    assert not at.exception


def test_without_models_the_page_explains_and_cannot_analyse(clinic, monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINLOC_MODELS_DIR", str(tmp_path / "empty"))
    get_settings.cache_clear()
    at = open_page("analyze.py", clinic.alice)
    assert not at.exception
    assert "not installed" in _texts(at.warning)
    assert at.button(key="analyze_run").disabled


def test_signed_out_visitors_get_no_uploader(clinic):
    # The page-URL trap: the page file runs on its own, without app.py.
    at = AppTest.from_file(str(REPO_ROOT / "pages" / "analyze.py"), default_timeout=30).run()
    assert not at.exception
    assert len(at.file_uploader) == 0


def test_two_practitioners_share_one_model_load(clinic, tiny_models, tmp_path, monkeypatch, caplog):
    import logging
    import shutil

    # A models folder no other test used, so this test sees the first load in the process.
    models = shutil.copytree(tiny_models, tmp_path / "fresh_models")
    monkeypatch.setenv("BRAINLOC_MODELS_DIR", str(models))
    get_settings.cache_clear()
    caplog.set_level(logging.INFO, logger="ui.models")
    for user, reference in ((clinic.alice, "A-1"), (clinic.bob, "B-1")):
        at = _upload(open_page("analyze.py", user), [("t.png", tumor_png())], reference)
        assert not at.exception
        assert "Tumor suspected" in _texts(at.error)
    loads = [r for r in caplog.records if r.getMessage().startswith("loading the pipeline")]
    assert len(loads) == 1


def test_a_nifti_volume_is_one_case_with_its_volume_estimate(clinic):
    from tests.brainloc.scan_factory import encode_nifti, volume_xyz

    volume = volume_xyz(n_slices=4, size=64)
    volume[20:36, 20:36, 2] = volume.max() * 3  # a bright lesion on one slice
    files = [("brain.nii.gz", encode_nifti(volume, zooms=(0.9, 0.8, 3.0), gz=True))]
    at = _upload(open_page("analyze.py", clinic.alice), files, "NIFTI-1")
    assert not at.exception, at.exception
    (saved,) = _analyses(clinic, clinic.alice)
    assert saved.slice_count == 4 and saved.has_tumor
    summary = at.table[0].value.to_string()
    assert "Estimated tumor volume" in summary and "mL" in summary
    assert "Largest cross-section" in summary and " mm on slice 3" in summary
    shown = at.table[-1].value.to_string()
    assert "mm²" in shown
    assert "Diameters (longest × perpendicular)" in shown and " mm" in shown
    # The lesion's slice is shown first, with its diameters drawn; the toggle takes them off.
    assert "Detected tumor in red, diameters in yellow" in str(at.get("image")[1].proto)
    at.toggle(key=f"analyze_{saved.id}_calipers").set_value(False).run()
    assert not at.exception
    assert "diameters in yellow" not in str(at.get("image")[1].proto)
    captions = [str(caption.value) for caption in at.caption]
    # One line says what was done with the single sequence and why it matters, not two.
    assert (
        sum("Only FLAIR present: copied into all three model channels" in c for c in captions) == 1
    )
    assert not any("read as FLAIR and copied" in c for c in captions)


def test_numbered_slices_are_one_volume_and_a_slice_called_by_the_volume_rule_says_so(
    clinic, monkeypatch, tmp_path
):
    from brainloc.findings_text import VOLUME_RULE_NOTE
    from tests.brainloc.conftest import build_tiny_models

    monkeypatch.setenv(
        "BRAINLOC_MODELS_DIR", str(build_tiny_models(tmp_path / "m", extend_threshold=0.2))
    )
    get_settings.cache_clear()
    faint = tumor_like_slice((64, 64), (20, 20, 16))
    faint[20:36, 20:36, 2] = 117  # the tiny classifier's P is about 0.3
    slices = {1: synthetic_slice((64, 64), seed=1), 2: faint}
    slices[3] = tumor_like_slice((64, 64), (20, 20, 16))
    files = [(f"CASE_V_{n}.tif", encode_tiff(slices[n])) for n in (3, 2, 1)]
    at = _upload(open_page("analyze.py", clinic.alice), files, "CASE-V")
    assert not at.exception
    (saved,) = _analyses(clinic, clinic.alice)
    assert saved.slice_count == 3 and saved.has_tumor
    slider = at.slider(key=f"analyze_{saved.id}_slice")
    at = slider.set_value(2).run()  # slices in number order: 2 is the faint one
    assert VOLUME_RULE_NOTE in _texts(at.caption)
    at = slider.set_value(3).run()
    assert VOLUME_RULE_NOTE not in _texts(at.caption)


def _upload_sequences(at, parts, reference):
    at = at.radio(key="analyze_mode").set_value("One upload per sequence").run()
    for name, files in parts.items():
        at.file_uploader(key=f"analyze_files_{name}").set_value(
            [(file, data, "application/octet-stream") for file, data in files]
        )
    at.text_input(key="analyze_case_ref").set_value(reference)
    return at.button(key="analyze_run").click().run()


def test_a_case_uploaded_one_sequence_at_a_time_is_combined_and_saved(clinic):
    from brainloc.scans import ALL_SEQUENCES, COMBINED_NOTE

    stack = _clear_then_tumor()
    parts = {
        name: [(f"{name}.tif", encode_tiff(np.ascontiguousarray(stack[..., channel])))]
        for channel, name in enumerate(ALL_SEQUENCES)
    }
    # One sequence missing: said, and nothing saved.
    missing = parts | {"post-contrast": []}
    at = _upload_sequences(open_page("analyze.py", clinic.alice), missing, "SEQ-1")
    assert not at.exception
    assert "choose the post-contrast file(s)" in _texts(at.error)
    assert _analyses(clinic, clinic.alice) == []
    at = _upload_sequences(open_page("analyze.py", clinic.alice), parts, "SEQ-1")
    assert not at.exception and "Nothing was saved" not in _texts(at.error)
    (saved,) = _analyses(clinic, clinic.alice)
    assert saved.slice_count == 2 and saved.case_reference == "SEQ-1"
    assert sorted(saved.findings["sequences_present"]) == sorted(ALL_SEQUENCES)
    assert COMBINED_NOTE in saved.findings["scan_notes"]
    assert COMBINED_NOTE in _texts(at.caption)  # the co-registration caveat is on screen


def test_a_zip_of_a_cases_slices_is_analysed_as_that_case(clinic):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("export/CASE_Z_1.tif", encode_tiff(synthetic_slice((64, 64), seed=1)))
        archive.writestr(
            "export/CASE_Z_2.tif", encode_tiff(tumor_like_slice((64, 64), (20, 20, 16)))
        )
        archive.writestr("export/index.html", b"<html></html>")
    at = _upload(open_page("analyze.py", clinic.alice), [("export.zip", buffer.getvalue())], "Z-1")
    assert not at.exception and "Nothing was saved" not in _texts(at.error)
    (saved,) = _analyses(clinic, clinic.alice)
    assert saved.slice_count == 2 and saved.has_tumor
    assert "export.zip: 2 image file(s) read; 1 other file(s)" in _texts(at.caption)


def test_a_study_export_is_analysed_as_its_three_recognised_series(clinic):
    from brainloc.scans import ALL_SEQUENCES
    from brainloc.study import RECOGNISED_PREFIX
    from tests.brainloc.scan_factory import encode_study, encode_zip

    grey = _clear_then_tumor().astype(np.uint16) * 16
    series = {
        "AX T1": grey[..., 0],
        "AX T2 FLAIR": grey[..., 1],
        "AX T1 POST GAD": grey[..., 2],
        "COR T1 POST GAD": grey[..., 2],
    }
    coronal = {"COR T1 POST GAD": {"orientation": (1, 0, 0, 0, 0, -1)}}
    study = encode_zip({**encode_study(series, coronal), "DICOMDIR": b"not read"})
    at = _upload(open_page("analyze.py", clinic.alice), [("study.zip", study)], "ST-1")
    assert not at.exception and "Nothing was saved" not in _texts(at.error)
    (saved,) = _analyses(clinic, clinic.alice)
    assert saved.slice_count == 2 and saved.has_tumor
    assert sorted(saved.findings["sequences_present"]) == sorted(ALL_SEQUENCES)
    shown = _texts(at.caption)
    assert (
        f"{RECOGNISED_PREFIX}: pre-contrast 'AX T1', FLAIR 'AX T2 FLAIR', post-contrast "
        "'AX T1 POST GAD'; not analysed: 'COR T1 POST GAD'"
    ) in shown
    assert "Only FLAIR present" not in shown


def test_file_names_and_series_descriptions_show_as_written_not_as_markdown(clinic):
    """A DICOM header or a file name is written by whoever made the file: as Markdown,
    ``![x](https://...)`` in it would make the reader's browser fetch that address."""
    from tests.brainloc.scan_factory import encode_study, encode_zip

    image = "![x](https://tracker.example/p.png)"
    grey = _clear_then_tumor().astype(np.uint16) * 16
    series = {"AX T1": grey[..., 0], f"AX T2 FLAIR {image}": grey[..., 1]}
    series["AX T1 POST GAD"] = grey[..., 2]
    study = encode_zip({**encode_study(series), "[notes](https://phish.example)": b"x"})
    at = _upload(open_page("analyze.py", clinic.alice), [("study.zip", study)], "ST-MD")
    assert not at.exception and "Nothing was saved" not in _texts(at.error)
    assert f"FLAIR 'AX T2 FLAIR {image}'" in _texts(at.caption)
    assert "1 other file(s) in the archive skipped" in _texts(at.caption)
    assert "](https://" not in _markdown(at.caption)
    named = "[Sign in again](https:phish.example).png"  # a file name holds no slash
    at = _upload(at, [(named, b"")], "ST-MD2")
    assert f"{named}: the file is empty" in _texts(at.error)
    assert "](https:" not in _markdown(at.error)


def test_a_study_s_series_are_chosen_by_hand_when_the_names_do_not_settle_it(clinic):
    from brainloc.casework import CHOSEN_PREFIX
    from brainloc.scans import ALL_SEQUENCES
    from tests.brainloc.scan_factory import encode_study, encode_zip

    grey = _clear_then_tumor().astype(np.uint16) * 16
    # Two FLAIR series: which one is meant is the user's call.
    series = {
        "AX T1": grey[..., 0],
        "AX FLAIR": grey[..., 1],
        "AX FLAIR repeat": grey[..., 1],
        "AX T1 +C": grey[..., 2],
    }
    at = open_page("analyze.py", clinic.alice)
    at.radio(key="analyze_mode").set_value("A study: choose its series").run()
    at.file_uploader(key="analyze_study_files").set_value(
        [("study.zip", encode_zip(encode_study(series)), "application/zip")]
    ).run()
    assert not at.exception
    boxes = {name: at.selectbox(key=f"analyze_study_{name}") for name in ALL_SEQUENCES}
    assert boxes["pre-contrast"].value == 0 and boxes["post-contrast"].value == 3
    assert boxes["FLAIR"].value is None  # two candidates: not guessed
    # The chosen series are shown (their middle slice), so the choice can be checked by eye.
    shown = [str(image.proto) for image in at.get("image")]
    assert len(shown) == 2
    assert "Pre-contrast: slice 2 of 2" in shown[0] and "Post-contrast: slice 2" in shown[1]
    assert boxes["FLAIR"].options == [
        "'AX T1' · axial · 2 slice(s) of 64×64",
        "'AX FLAIR' · axial · 2 slice(s) of 64×64",
        "'AX FLAIR repeat' · axial · 2 slice(s) of 64×64",
        "'AX T1 +C' · axial · 2 slice(s) of 64×64",
    ]
    at.text_input(key="analyze_case_ref").set_value("PICK-1")
    # Left unchosen, or one series twice: said, nothing saved.
    at = at.button(key="analyze_run").click().run()
    assert "Nothing was saved. choose the FLAIR series" in _texts(at.error)
    at.selectbox(key="analyze_study_FLAIR").set_value(0)
    at = at.button(key="analyze_run").click().run()
    assert "the same series was chosen for two sequences" in _texts(at.error)
    assert _analyses(clinic, clinic.alice) == []
    at.selectbox(key="analyze_study_FLAIR").set_value(2).run()
    assert len(at.get("image")) == 3
    at = at.button(key="analyze_run").click().run()
    assert not at.exception and "Nothing was saved" not in _texts(at.error)
    (saved,) = _analyses(clinic, clinic.alice)
    assert saved.slice_count == 2 and saved.has_tumor and saved.case_reference == "PICK-1"
    assert sorted(saved.findings["sequences_present"]) == sorted(ALL_SEQUENCES)
    chosen = (
        f"{CHOSEN_PREFIX}: pre-contrast 'AX T1', FLAIR 'AX FLAIR repeat', post-contrast 'AX T1 +C'"
    )
    assert chosen in saved.findings["scan_notes"] and chosen in _texts(at.caption)
    # Another study: its own guesses, not the choices made for the last one.
    del series["AX FLAIR repeat"]
    at.file_uploader(key="analyze_study_files").set_value(
        [("other.zip", encode_zip(encode_study(series)), "application/zip")]
    ).run()
    assert [at.selectbox(key=f"analyze_study_{name}").value for name in ALL_SEQUENCES] == [0, 1, 2]
    # A study without usable T1 series: FLAIR alone, said as such.
    at.checkbox(key="analyze_study_flair_alone").check().run()
    study_boxes = [box.key for box in at.selectbox if str(box.key).startswith("analyze_study_")]
    assert study_boxes == ["analyze_study_FLAIR"]
    at.text_input(key="analyze_case_ref").set_value("PICK-2")
    at = at.button(key="analyze_run").click().run()
    assert not at.exception and "Nothing was saved" not in _texts(at.error)
    flair_alone = [a for a in _analyses(clinic, clinic.alice) if a.case_reference == "PICK-2"]
    assert [a.findings["sequences_present"] for a in flair_alone] == [["FLAIR"]]
    assert f"{CHOSEN_PREFIX}: FLAIR 'AX FLAIR' alone" in flair_alone[0].findings["scan_notes"]


def test_a_study_that_cannot_be_read_says_why_and_offers_nothing_to_choose(clinic):
    at = open_page("analyze.py", clinic.alice)
    at.radio(key="analyze_mode").set_value("A study: choose its series").run()
    at.file_uploader(key="analyze_study_files").set_value(
        [("study.zip", b"PK\x03\x04 not really a zip", "application/zip")]
    ).run()
    assert not at.exception
    assert "study.zip: the ZIP archive is damaged and cannot be read" in _texts(at.error)
    assert not [box for box in at.selectbox if str(box.key).startswith("analyze_study_")]
    assert _analyses(clinic, clinic.alice) == []


def test_pressing_analyze_again_on_the_same_files_saves_nothing_twice(clinic):
    # The form keeps its files and reference after a save; a second press (or a double
    # click) shows the saved analysis instead of saving a copy.
    at = _upload(open_page("analyze.py", clinic.alice), [("tumor.png", tumor_png())], "R1")
    assert [a.case_reference for a in _analyses(clinic, clinic.alice)] == ["R1"]
    at = at.button(key="analyze_run").click().run()
    assert not at.exception
    assert "nothing was saved again" in _texts(at.info)
    assert len(_analyses(clinic, clinic.alice)) == 1
    assert "Result: R1" in _texts(at.subheader)
    # Another case reference is another analysis, as asked.
    at.text_input(key="analyze_case_ref").set_value("R1-again")
    at = at.button(key="analyze_run").click().run()
    assert [a.case_reference for a in _analyses(clinic, clinic.alice)] == ["R1-again", "R1"]
    # The reference is shown as written, not as Markdown (a heading, a link).
    assert _markdown(at.subheader) == r"Result: R1\-again"


def test_a_file_over_the_upload_limit_is_refused_with_its_size(clinic, monkeypatch):
    # BRAINLOC_MAX_UPLOAD_MB applies to each uploader (the browser refuses such a file) and
    # again to what the server receives: a request that skipped the browser gets this.
    monkeypatch.setenv("BRAINLOC_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    rng = np.random.default_rng(3)
    big = encode_tiff(rng.integers(0, 255, size=(1100, 1100), dtype=np.uint8))  # 1.15 MB
    files = [("tumor.png", tumor_png()), ("big.tif", big)]
    at = _upload(open_page("analyze.py", clinic.alice), files, "CASE-BIG")
    assert not at.exception
    assert at.file_uploader(key="analyze_files").proto.max_upload_size_mb == 1
    assert "big.tif is 1.2 MB; the largest file accepted here is 1 MB" in _texts(at.error)
    assert _analyses(clinic, clinic.alice) == []
    # The study mode reads nothing of it either.
    at.radio(key="analyze_mode").set_value("A study: choose its series").run()
    at.file_uploader(key="analyze_study_files").set_value([("big.tif", big, "image/tiff")]).run()
    assert not at.exception
    assert "big.tif is 1.2 MB" in _texts(at.error)
    assert not [box for box in at.selectbox if str(box.key).startswith("analyze_study_")]


def test_an_upload_over_the_configured_pixel_limit_is_refused_naming_it(clinic, monkeypatch):
    """BRAINLOC_MAX_UPLOAD_PIXELS (a small server lowers it): one pixel over the limit set is
    refused with the limit named; the same files within it are analysed and saved."""
    files = [("a.png", clear_png()), ("b.png", tumor_png())]  # two 96 x 96 slices
    monkeypatch.setenv("BRAINLOC_MAX_UPLOAD_PIXELS", str(2 * 96 * 96 - 1))
    at = _upload(open_page("analyze.py", clinic.alice), files, "CASE-PIXELS")
    assert not at.exception
    message = _texts(at.error)
    assert "Nothing was saved" in message
    assert "more than 18,431 pixels together" in message and "BRAINLOC_MAX_UPLOAD_PIXELS" in message
    assert _analyses(clinic, clinic.alice) == []
    monkeypatch.setenv("BRAINLOC_MAX_UPLOAD_PIXELS", str(2 * 96 * 96))
    at = at.button(key="analyze_run").click().run()
    assert not at.exception and "Nothing was saved" not in _texts(at.error)
    assert len(_analyses(clinic, clinic.alice)) == 1


def test_an_unexpected_failure_is_logged_as_one_record_whatever_its_text(
    clinic, monkeypatch, capsys
):
    """The exception's text may hold a file's name or a header value with a line break: the
    server's log (standard error, app.py's handler) shows it as a continuation of the one
    "analysis failed" record, not as a record of its own."""
    import brainloc.casework
    from brainloc.log_format import CONTINUATION

    def failing_analysis(*args, **kwargs):
        raise RuntimeError("IM0001 header 'AX FLAIR\n2026-01-01 INFO forged'")

    monkeypatch.setattr(brainloc.casework, "analyze_uploads", failing_analysis)
    at = _upload(open_page("analyze.py", clinic.alice), [("t.png", tumor_png())], "CASE-LOG")
    assert not at.exception
    assert "The analysis failed unexpectedly" in _texts(at.error)
    lines = capsys.readouterr().err.splitlines()
    (head,) = [k for k, line in enumerate(lines) if line.endswith(": analysis failed")]
    assert " ERROR " in lines[head]
    record = lines[head:]
    assert record[1] == f"{CONTINUATION}Traceback (most recent call last):"
    assert f"{CONTINUATION}2026-01-01 INFO forged'" in record
    assert not [line for line in lines if "forged" in line and not line.startswith(CONTINUATION)]


def test_a_session_ended_in_another_tab_while_the_models_ran_saves_nothing(clinic, monkeypatch):
    """The password is changed in another tab after this page checked the session and before
    the save (done here as the models finish): the page says that nothing was saved and why,
    and the next interaction shows the sign-in page's notice."""
    import brainloc.casework
    from brainloc.account_security import end_other_sessions
    from db.engine import session_scope
    from db.types import utc_now
    from ui.state import SESSION_ENDED_NOTICE, SIGNED_IN_AT_KEY

    at = open_page("analyze.py", clinic.alice)
    at.session_state[SIGNED_IN_AT_KEY] = utc_now()  # as the sign-in records it
    real_analysis = brainloc.casework.analyze_uploads

    def analysis_while_another_tab_ends_the_sessions(*args, **kwargs):
        outcome = real_analysis(*args, **kwargs)
        with session_scope(clinic.settings.database_url) as session:
            end_other_sessions(session, user_id=clinic.alice)
        return outcome

    monkeypatch.setattr(
        brainloc.casework, "analyze_uploads", analysis_while_another_tab_ends_the_sessions
    )
    at = _upload(at.run(), [("tumor.png", tumor_png())], "CASE-ENDED")
    assert not at.exception
    message = _texts(at.error)
    assert "Nothing was saved" in message and "signed out while the analysis ran" in message
    assert _analyses(clinic, clinic.alice) == []
    at = at.run()
    assert not at.exception
    assert SESSION_ENDED_NOTICE in _texts(at.info)
