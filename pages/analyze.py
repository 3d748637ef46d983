"""Analyze page: upload a slice, several slices, a case, its three sequences or a study whose
series the user picks; see the result.

Uploads are read and checked by :mod:`brainloc.scans`; a bad file shows its own message and
nothing is saved. The analysis is stored with the scan, mask, results and model versions,
then shown from the stored record, exactly as the case page will reopen it.
"""

import hashlib
import logging

import streamlit as st

from brainloc.casework import (
    analyze_chosen_series,
    analyze_sequences,
    analyze_uploads,
    load_case,
    save_outcome,
)
from brainloc.scans import ALL_SEQUENCES, ScanError, oversized_upload, read_uploads
from brainloc.settings import get_settings
from brainloc.study import describe_series, guess_assignment
from db.engine import session_scope
from ui.case_view import SEQUENCE_LABELS, render_case
from ui.guard import require_user
from ui.markdown import escape_markdown
from ui.models import get_pipeline

user = require_user()

logger = logging.getLogger(__name__)
LAST_KEY = "analyze_last_id"
#: (fingerprint, analysis id) of the last analysis saved from this page (see ``_run``).
SAVED_KEY = "analyze_saved"
FILE_TYPES = ["tif", "tiff", "png", "jpg", "jpeg", "dcm", "dicom", "ima", "nii", "gz", "zip"]

st.title("Analyze")
st.caption(
    "Upload one MRI slice, several slices, or a whole case (multi-page TIFF, a DICOM series "
    "as several files, a NIfTI volume, or a ZIP of them such as a study exported from PACS), "
    "or a case's three sequences one upload each, or a study whose series you pick. "
    "BrainLoc supports, and does not replace, a specialist's judgement."
)
pipeline = get_pipeline()

ONE_UPLOAD = "One upload"
PER_SEQUENCE = "One upload per sequence"
STUDY = "A study: choose its series"
mode = st.radio(
    "How the case is stored",
    [ONE_UPLOAD, PER_SEQUENCE, STUDY],
    horizontal=True,
    captions=[
        "Files holding all three sequences as channels (like the Kaggle LGG slices); a study "
        "whose pre-contrast, FLAIR and post-contrast series are named as such (e.g. 'AX T1', "
        "'AX FLAIR', 'AX T1 +C'), combined for you; or one sequence only (read as FLAIR)",
        "Pre-contrast, FLAIR and post-contrast as three series: on one grid, or DICOM or NIfTI "
        "series that are resampled onto the FLAIR slices by the positions in their headers",
        "A PACS export (a ZIP, or its DICOM files): you pick which of its series is "
        "pre-contrast, FLAIR and post-contrast",
    ],
    key="analyze_mode",
)


def _contents(chosen) -> list[tuple[str, bytes]]:
    return [(file.name, file.getvalue()) for file in chosen or ()]


#: The largest file an uploader takes (MB): ``BRAINLOC_MAX_UPLOAD_MB``, within the server's own
#: ``server.maxUploadSize``, which Streamlit enforces on every upload request.
UPLOAD_LIMIT_MB = min(get_settings().max_upload_mb, int(st.get_option("server.maxUploadSize")))


def _oversized(*chosen) -> bool:
    """Show why and return True when a chosen file is larger than the limit."""
    sizes = [(file.name, file.size) for files in chosen for file in files or ()]
    problem = oversized_upload(sizes, UPLOAD_LIMIT_MB)
    if problem:
        st.error(escape_markdown(problem))
    return problem is not None


def _fingerprint(case_reference: str, *parts: object) -> str:
    """What one press of Analyze would save: the case reference, the mode's choices and the
    uploaded files' contents (as SHA-256)."""
    digest = hashlib.sha256(case_reference.strip().encode())

    def add(part: object) -> None:
        if isinstance(part, list | tuple):
            for item in part:
                add(item)
        elif isinstance(part, bytes):
            digest.update(b"\0" + hashlib.sha256(part).digest())
        else:
            digest.update(b"\0" + str(part).encode())

    add(parts)
    return digest.hexdigest()


def _run(analyse, case_reference: str, fingerprint: str) -> int | None:
    """Analyse and save; returns the new analysis id, or None after showing why not.

    ``analyse(progress, max_slices)`` reads the upload and returns the Outcome. The same
    files under the same case reference pressed again (the form keeps them, and a double
    click presses twice) are not saved a second time: the analysis saved for them is shown.
    """
    if not case_reference.strip():
        st.error("Enter a case reference, so you can find this analysis again.")
        return None
    saved = st.session_state.get(SAVED_KEY)
    if saved is not None and saved[0] == fingerprint:
        st.info(
            f"These files were analysed and saved under this case reference already (analysis "
            f"#{saved[1]}, below); nothing was saved again. To analyse them once more, change "
            "the case reference."
        )
        return saved[1]
    bar = st.progress(0.0, text="Reading the files...")

    def show(share: float) -> None:
        bar.progress(share, text=f"Analysing... {share:.0%}")

    try:
        outcome = analyse(show, get_settings().scan_limits.max_slices)
        with session_scope() as session:
            # A save finishing after this session was signed out elsewhere (a password
            # change in another tab while the models ran) is refused with a ValueError.
            analysis_id = save_outcome(
                session,
                owner_id=user.id,
                case_reference=case_reference,
                outcome=outcome,
                signed_in_at=user.signed_in_at,
            )
        # At once: a second click that interrupts this run finds it saved.
        st.session_state[SAVED_KEY] = (fingerprint, analysis_id)
        st.session_state[LAST_KEY] = analysis_id
    except (ScanError, ValueError) as error:
        bar.empty()
        st.error(f"Nothing was saved. {escape_markdown(str(error))}")
        return None
    except Exception:  # noqa: BLE001 - a user never sees a traceback
        logger.exception("analysis failed")
        bar.empty()
        st.error("The analysis failed unexpectedly; nothing was saved. Please try again.")
        return None
    bar.progress(1.0, text=f"Done: {len(outcome.slices)} slice(s) analysed and saved.")
    return analysis_id


def _study_scans(files):
    """The scans of the uploaded study, read once per upload; None after showing why not."""
    if not files or _oversized(files):
        st.session_state.pop(STUDY_KEY, None)
        return None
    upload = tuple(file.file_id for file in files)
    held = st.session_state.get(STUDY_KEY)
    if held is None or held[0] != upload:
        try:
            with st.spinner("Reading the study..."):
                scans = read_uploads(_contents(files))
        except ScanError as error:
            st.session_state.pop(STUDY_KEY, None)
            st.error(escape_markdown(str(error)))
            return None
        except Exception:  # noqa: BLE001 - a user never sees a traceback
            logger.exception("reading a study failed")
            st.session_state.pop(STUDY_KEY, None)
            st.error("The study could not be read; please try again.")
            return None
        held = (upload, scans)
        st.session_state[STUDY_KEY] = held
        for name in ALL_SEQUENCES:  # a new study: its own guesses, not the last one's choices
            st.session_state.pop(f"analyze_study_{name}", None)
    return held[1]


def _reference_and_submit() -> tuple[str, bool]:
    """The case reference field and the Analyze button that end every form on this page."""
    case_reference = st.text_input(
        "Case reference",
        max_chars=200,
        placeholder="e.g. your hospital's case or accession number",
        key="analyze_case_ref",
    )
    submitted = st.form_submit_button(
        "Analyze", type="primary", disabled=pipeline is None, key="analyze_run"
    )
    return case_reference, submitted


STUDY_KEY = "analyze_study_scans"
new_id = None
if mode == STUDY:
    study_files = st.file_uploader(
        "Study files",
        type=FILE_TYPES,
        accept_multiple_files=True,
        max_upload_size=UPLOAD_LIMIT_MB,
        key="analyze_study_files",
    )
    scans = _study_scans(study_files)
    if scans:
        st.caption(
            f"{len(scans)} series found. Those whose names say which sequence they are are "
            "chosen already; check them."
        )
        labels = [describe_series(scan) for scan in scans]
        guess = guess_assignment(scans)
        flair_alone = st.checkbox(
            "FLAIR alone (the study has no usable T1 series before and after contrast)",
            key="analyze_study_flair_alone",
        )
        wanted = ("FLAIR",) if flair_alone else ALL_SEQUENCES
        # Outside the form, so that each choice shows its series at once.
        chosen = {
            name: st.selectbox(
                f"{SEQUENCE_LABELS[name]} series",
                options=range(len(scans)),
                index=guess[name],
                format_func=labels.__getitem__,
                placeholder="Choose a series",
                key=f"analyze_study_{name}",
            )
            for name in wanted
        }
        # The middle slice of each choice: a radiologist knows a sequence by its look.
        for column, name in zip(st.columns(3), wanted, strict=False):
            if chosen[name] is not None:
                picked = scans[chosen[name]]
                middle = picked.n_slices // 2
                column.image(
                    picked.slices[middle, ..., 0],
                    caption=f"{SEQUENCE_LABELS[name]}: slice {middle + 1} of {picked.n_slices}",
                    width="stretch",
                )
        with st.form("analyze_study_form"):
            case_reference, submitted = _reference_and_submit()
        if submitted:
            names = [file.name for file in study_files]
            new_id = _run(
                lambda show, limit: analyze_chosen_series(
                    pipeline, scans, chosen, names, progress=show, max_slices=limit
                ),
                case_reference,
                _fingerprint(case_reference, mode, sorted(chosen.items()), *_contents(study_files)),
            )
else:
    with st.form("analyze_form"):
        if mode == PER_SEQUENCE:
            files = {
                name: st.file_uploader(
                    f"{SEQUENCE_LABELS[name]} files",
                    type=FILE_TYPES,
                    accept_multiple_files=True,
                    max_upload_size=UPLOAD_LIMIT_MB,
                    key=f"analyze_files_{name}",
                )
                for name in ALL_SEQUENCES
            }
        else:
            files = st.file_uploader(
                "Scan files",
                type=FILE_TYPES,
                accept_multiple_files=True,
                max_upload_size=UPLOAD_LIMIT_MB,
                key="analyze_files",
            )
        case_reference, submitted = _reference_and_submit()
    if submitted:
        if not (any(files.values()) if mode == PER_SEQUENCE else files):
            st.error("Choose at least one scan file.")
        elif _oversized(*(files.values() if mode == PER_SEQUENCE else [files])):
            pass  # the message is shown; nothing is read or saved
        elif mode == PER_SEQUENCE:
            uploads = {name: _contents(chosen) for name, chosen in files.items()}
            new_id = _run(
                lambda show, limit: analyze_sequences(
                    pipeline, uploads, progress=show, max_slices=limit
                ),
                case_reference,
                _fingerprint(case_reference, mode, *sorted(uploads.items())),
            )
        else:
            new_id = _run(
                lambda show, limit: analyze_uploads(
                    pipeline, _contents(files), progress=show, max_slices=limit
                ),
                case_reference,
                _fingerprint(case_reference, mode, *_contents(files)),
            )
if new_id is not None:
    st.session_state[LAST_KEY] = new_id

last_id = st.session_state.get(LAST_KEY)
if last_id is not None:
    with session_scope() as session:
        case = load_case(session, owner_id=user.id, analysis_id=int(last_id))
    if case is not None:
        st.divider()
        st.subheader(f"Result: {escape_markdown(case.case_reference)}")
        render_case(case, key=f"analyze_{case.id}")
        st.page_link(
            "pages/case.py",
            label="Open the case to add notes and issue a report",
            icon=":material/folder_open:",
            query_params={"id": str(case.id)},
        )
