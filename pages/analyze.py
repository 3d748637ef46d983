"""Analyze page: upload a slice, several slices, a case or its three sequences; see the result.

Uploads are read and checked by :mod:`brainloc.scans`; a bad file shows its own message and
nothing is saved. The analysis is stored with the scan, mask, results and model versions,
then shown from the stored record, exactly as the case page will reopen it.
"""

import logging

import streamlit as st

from brainloc.casework import analyze_sequences, analyze_uploads, load_case, save_outcome
from brainloc.scans import ALL_SEQUENCES, ScanError
from brainloc.settings import get_settings
from db.engine import session_scope
from ui.case_view import render_case
from ui.guard import require_user
from ui.models import get_pipeline

user = require_user()

logger = logging.getLogger(__name__)
LAST_KEY = "analyze_last_id"
FILE_TYPES = ["tif", "tiff", "png", "jpg", "jpeg", "dcm", "dicom", "ima", "nii", "gz", "zip"]

st.title("Analyze")
st.caption(
    "Upload one MRI slice, several slices, or a whole case (multi-page TIFF, a DICOM series "
    "as several files, a NIfTI volume, or a ZIP of them such as a study exported from PACS), "
    "or a case's three sequences one upload each. "
    "BrainLoc supports, and does not replace, a specialist's judgement."
)
pipeline = get_pipeline()

ONE_UPLOAD = "One upload"
PER_SEQUENCE = "One upload per sequence"
mode = st.radio(
    "How the case is stored",
    [ONE_UPLOAD, PER_SEQUENCE],
    horizontal=True,
    captions=[
        "Files holding all three sequences as channels (like the Kaggle LGG slices); a study "
        "whose pre-contrast, FLAIR and post-contrast series are named as such (e.g. 'AX T1', "
        "'AX FLAIR', 'AX T1 +C'), combined for you; or one sequence only (read as FLAIR)",
        "Pre-contrast, FLAIR and post-contrast as three series: on one grid, or DICOM series "
        "that are resampled onto the FLAIR slices by the positions in their headers",
    ],
    key="analyze_mode",
)

with st.form("analyze_form"):
    if mode == PER_SEQUENCE:
        files = {
            name: st.file_uploader(
                f"{name[0].upper()}{name[1:]} files",
                type=FILE_TYPES,
                accept_multiple_files=True,
                key=f"analyze_files_{name}",
            )
            for name in ALL_SEQUENCES
        }
    else:
        files = st.file_uploader(
            "Scan files", type=FILE_TYPES, accept_multiple_files=True, key="analyze_files"
        )
    case_reference = st.text_input(
        "Case reference",
        max_chars=200,
        placeholder="e.g. your hospital's case or accession number",
        key="analyze_case_ref",
    )
    submitted = st.form_submit_button(
        "Analyze", type="primary", disabled=pipeline is None, key="analyze_run"
    )


def _contents(chosen) -> list[tuple[str, bytes]]:
    return [(file.name, file.getvalue()) for file in chosen or ()]


def _run(files, case_reference: str) -> int | None:
    """Analyse and save; returns the new analysis id, or None after showing why not.

    ``files``: the uploaded files, or a dict of them per sequence (one upload per sequence).
    """
    per_sequence = isinstance(files, dict)
    if not (any(files.values()) if per_sequence else files):
        st.error("Choose at least one scan file.")
        return None
    if not case_reference.strip():
        st.error("Enter a case reference, so you can find this analysis again.")
        return None
    bar = st.progress(0.0, text="Reading the files...")

    def show(share: float) -> None:
        bar.progress(share, text=f"Analysing... {share:.0%}")

    limit = get_settings().scan_limits.max_slices
    try:
        if per_sequence:
            uploads = {name: _contents(chosen) for name, chosen in files.items()}
            outcome = analyze_sequences(pipeline, uploads, progress=show, max_slices=limit)
        else:
            outcome = analyze_uploads(pipeline, _contents(files), progress=show, max_slices=limit)
        with session_scope() as session:
            analysis_id = save_outcome(
                session, owner_id=user.id, case_reference=case_reference, outcome=outcome
            )
    except (ScanError, ValueError) as error:
        bar.empty()
        st.error(f"Nothing was saved. {error}")
        return None
    except Exception:  # noqa: BLE001 - a user never sees a traceback
        logger.exception("analysis failed")
        bar.empty()
        st.error("The analysis failed unexpectedly; nothing was saved. Please try again.")
        return None
    bar.progress(1.0, text=f"Done: {len(outcome.slices)} slice(s) analysed and saved.")
    return analysis_id


if submitted:
    new_id = _run(files, case_reference)
    if new_id is not None:
        st.session_state[LAST_KEY] = new_id

last_id = st.session_state.get(LAST_KEY)
if last_id is not None:
    with session_scope() as session:
        case = load_case(session, owner_id=user.id, analysis_id=int(last_id))
    if case is not None:
        st.divider()
        st.subheader(f"Result: {case.case_reference}")
        render_case(case, key=f"analyze_{case.id}")
        st.page_link(
            "pages/case.py",
            label="Open the case to add notes and issue a report",
            icon=":material/folder_open:",
            query_params={"id": str(case.id)},
        )
