"""From an upload to a stored analysis and back: the analyze and case pages' logic.

:func:`analyze_uploads` reads the uploaded files with :mod:`brainloc.scans` (one file, several
slices, a multi-page TIFF, a DICOM series or a NIfTI volume) and runs the pipeline over every
slice as one case; :func:`analyze_sequences` does the same for a case uploaded as three
single-sequence series, one per model channel. :func:`save_outcome` stores it for its owner
through :mod:`db.clinical`, and :func:`load_case` reads it back as plain arrays and values, so
a case reopens exactly as it was analysed. Nothing here imports Streamlit; the pages pass plain
values in and get plain values back.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image

from brainloc.findings import CaseFindings, SliceFindings, case_findings
from brainloc.scan_align import combine_series
from brainloc.scans import (
    ALL_SEQUENCES,
    Scan,
    ScanError,
    read_uploads,
    refuse_repeated_sequences,
    sequence_scan,
)
from brainloc.study import series_label, study_case, with_upload_notes
from db import clinical, clinical_corrections
from db.arrays import array_from_bytes

logger = logging.getLogger(__name__)

#: Called with the share of the work done, 0.0 .. 1.0.
Progress = Callable[[float], None]


@dataclass(frozen=True)
class AnalyzedSlice:
    """One slice as analysed: the exact input and the pipeline's answer."""

    image: np.ndarray
    name: str
    result: Any  # brainloc.inference.SliceResult (not imported: keeps TensorFlow optional here)
    spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None


@dataclass(frozen=True)
class Outcome:
    """The analysis of one upload (one or several files), not yet saved."""

    slices: tuple[AnalyzedSlice, ...]
    summary: CaseFindings
    source_name: str
    source_format: str
    sequences_present: tuple[str, ...]
    notes: tuple[str, ...]
    classifier: tuple[str, str]
    segmenter: tuple[str, str]
    threshold: float
    #: What the models ran in: "float32" or "bfloat16" (``Pipeline.precision``).
    arithmetic: str = "float32"
    #: The day the scan was made ("YYYY-MM-DD", from the DICOM header), when its files agree.
    scan_date: str | None = None


@dataclass(frozen=True)
class StoredSlice:
    """A stored slice, decoded: uint8 (H, W, 3) image and bool (H, W) mask."""

    index: int
    name: str
    image: np.ndarray
    mask: np.ndarray
    tumor_probability: float
    has_tumor: bool
    findings: dict[str, Any]
    spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None


@dataclass(frozen=True)
class StoredCase:
    """An own analysis as the case page shows it."""

    id: int
    case_reference: str
    created_at: datetime
    source_name: str
    source_format: str
    tumor_probability: float
    has_tumor: bool
    threshold: float
    classifier: tuple[str, str]
    segmenter: tuple[str, str]
    findings: dict[str, Any]
    slices: tuple[StoredSlice, ...] = field(repr=False)
    #: "float32" or "bfloat16"; "" for analyses stored before it was recorded.
    arithmetic: str = ""
    #: Every case reference it has had, newest (``case_reference``) first; more than one
    #: when it was corrected (:mod:`db.clinical_corrections`).
    references: tuple[clinical_corrections.ReferenceSnapshot, ...] = ()
    #: When its owner marked it entered in error, and why; None and "" when not marked.
    entered_in_error_at: datetime | None = None
    entered_in_error_reason: str = ""

    @property
    def entered_in_error(self) -> bool:
        """True when it was marked entered in error (kept, but closed and set apart)."""
        return self.entered_in_error_at is not None

    @property
    def reference_version(self) -> int | None:
        """The version of the current case reference (1 until it is corrected)."""
        return self.references[0].version if self.references else None

    @property
    def model_labels(self) -> list[str]:
        """e.g. ["brainloc-classifier v1.0.0", "brainloc-segmenter v1.0.0"]."""
        return model_labels(self.classifier, self.segmenter)

    @property
    def source_summary(self) -> str:
        """The uploaded files in a few words: all of them up to three, else the first and the
        last (a case of 38 slice files listed whole filled several lines on the case page)."""
        files = [name for name in self.source_name.split(", ") if name]
        if len(files) <= 3:
            return self.source_name or "-"
        last = self.slices[-1].name or files[-1]
        return f"{files[0]} … {last}"

    @property
    def models_text(self) -> str:
        """The models and the arithmetic they ran in, as the case view and the report say it."""
        text = ", ".join(self.model_labels) or "not recorded"
        return f"{text} (computed in {self.arithmetic})" if self.arithmetic else text

    @property
    def scan_date(self) -> str | None:
        """The day the scan was made ("YYYY-MM-DD", from its DICOM header), when recorded."""
        return self.findings.get("scan_date")

    @property
    def key_slice(self) -> int:
        """The slice to show first: the largest tumor, else the most suspicious slice."""
        largest = self.findings.get("largest_slice")
        if largest is not None and 0 <= int(largest) < len(self.slices):
            return int(largest)
        return int(np.argmax([s.tumor_probability for s in self.slices]))


def model_labels(*models: tuple[str, str]) -> list[str]:
    """ "name vversion" for each (name, version) that has a name (older rows may have none)."""
    return [f"{name} v{version}" for name, version in models if name]


def _merge_summary(scans: Sequence[Scan], findings: list[SliceFindings]) -> CaseFindings:
    areas = [f.area_px for f in findings]
    calipers = [f.calipers for f in findings]
    # A volume only makes sense for one scan with known geometry.
    if len(scans) == 1:
        return case_findings(areas, scans[0].spacing_mm, scans[0].slice_thickness_mm, calipers)
    return case_findings(areas, calipers=calipers)


def analyze_uploads(
    pipeline,
    files: Sequence[tuple[str, bytes]],
    *,
    progress: Progress | None = None,
    max_slices: int | None = None,
) -> Outcome:
    """Read and analyse uploaded files as one case.

    Args:
        pipeline: a loaded :class:`brainloc.inference.Pipeline`.
        files: (file name, bytes) pairs as uploaded.
        progress: called with the share done, for a progress bar.
        max_slices: the most slices one upload may hold (the deployment's limit).

    Raises:
        brainloc.scans.ScanError: a file cannot be read, or the upload has too many slices
            (message fit for the user).
    """
    scans, study_notes = study_case(read_uploads(files))
    studies = [scan for scan in scans if scan.source_format == "dicom" and scan.n_slices > 1]
    if len(studies) > 1:
        # Several DICOM series the names did not settle: analysing each as FLAIR would mean
        # nothing. The user picks them instead.
        reason = (
            study_notes[0]
            if study_notes
            else (
                "their names do not say which are the pre-contrast, FLAIR and post-contrast series"
            )
        )
        raise ScanError(
            f"this upload holds {len(studies)} DICOM series "
            f"({', '.join(series_label(scan) for scan in studies)}); {reason}; choose them "
            "under 'A study: choose its series', or upload one series"
        )
    outcome = _analyze_scans(
        pipeline, scans, [name for name, _ in files], progress=progress, max_slices=max_slices
    )
    notes = (*outcome.notes, *study_notes)
    if not study_notes and _looks_like_sequences(scans):
        notes += (SEPARATE_SERIES_NOTE,)
    return replace(outcome, notes=notes)


#: Said when one upload holds several single-sequence series of one shape (e.g. a study's
#: pre-contrast, FLAIR and post-contrast series), each of which was read as FLAIR.
SEPARATE_SERIES_NOTE = (
    "this upload holds separate single-sequence series of the same size, each analysed as "
    "FLAIR; if they are one case's pre-contrast, FLAIR and post-contrast series, analyse them "
    "with 'A study: choose its series' or 'One upload per sequence'"
)


def _looks_like_sequences(scans: Sequence[Scan]) -> bool:
    multi = [scan for scan in scans if scan.n_slices > 1]
    return (
        len(multi) >= 2
        and all(scan.single_sequence for scan in multi)
        and len({(scan.n_slices, scan.shape) for scan in multi}) == 1
    )


def analyze_sequences(
    pipeline,
    uploads: dict[str, Sequence[tuple[str, bytes]]],
    *,
    progress: Progress | None = None,
    max_slices: int | None = None,
) -> Outcome:
    """Analyse one case uploaded as three single-sequence series, one upload per sequence.

    Args:
        uploads: the (file name, bytes) pairs of each sequence, keyed by the model channel
            (pre-contrast, FLAIR, post-contrast); each must read as one image, volume or
            DICOM series. They are combined slice by slice
            (:func:`brainloc.scan_align.combine_series`, which resamples DICOM series on
            other grids onto the FLAIR slices).
        progress, max_slices: as for :func:`analyze_uploads`.

    Raises:
        brainloc.scans.ScanError: a sequence is missing or unreadable, splits into several
            scans, or does not match the others (message fit for the user).
    """
    series = {}
    for name in ALL_SEQUENCES:
        if not uploads.get(name):
            raise ScanError(f"choose the {name} file(s)")
    refuse_repeated_sequences({name: [data for _, data in uploads[name]] for name in ALL_SEQUENCES})
    for name in ALL_SEQUENCES:
        series[name] = sequence_scan(name, read_uploads(list(uploads[name])))
    names = [f"{name}: {file}" for name in ALL_SEQUENCES for file, _ in uploads[name]]
    return _analyze_scans(
        pipeline, [combine_series(series)], names, progress=progress, max_slices=max_slices
    )


def analyze_chosen_series(
    pipeline,
    scans: Sequence[Scan],
    chosen: dict[str, int],
    file_names: Sequence[str],
    *,
    progress: Progress | None = None,
    max_slices: int | None = None,
) -> Outcome:
    """Analyse one case made of the series the user picked from a study's scans: pre-contrast,
    FLAIR and post-contrast, or FLAIR alone (read as a single sequence).

    Args:
        scans: what :func:`brainloc.scans.read_uploads` read from the study's files.
        chosen: the index in ``scans`` of the pre-contrast, FLAIR and post-contrast series
            (None for a sequence not chosen).
        file_names: the uploaded files' names (the case's source).
        progress, max_slices: as for :func:`analyze_uploads`.

    Raises:
        brainloc.scans.ScanError: FLAIR or one of the two T1 series is missing, a series is
            chosen twice or holds three sequences, or the three cannot be combined (message
            fit for the user).
    """
    if chosen.get("FLAIR") is None:
        raise ScanError("choose the FLAIR series")
    picked = {name: chosen[name] for name in ALL_SEQUENCES if chosen.get(name) is not None}
    if len(picked) == 2:
        raise ScanError(
            "choose both the pre-contrast and the post-contrast series, or neither for an "
            "analysis of FLAIR alone"
        )
    if not all(0 <= index < len(scans) for index in picked.values()):
        raise ScanError("a chosen series is not part of this upload; upload the study again")
    if len(set(picked.values())) < len(picked):
        raise ScanError("the same series was chosen for two sequences; choose three series")
    series = {name: scans[index] for name, index in picked.items()}
    named = ", ".join(f"{name} {series_label(scan)}" for name, scan in series.items())
    if len(series) == 1:
        if not series["FLAIR"].single_sequence:
            raise ScanError(
                "the series chosen as FLAIR holds three sequences as colour (a picture, not a "
                "series); choose a FLAIR series"
            )
        combined, named = series["FLAIR"], f"{named} alone"
    else:
        combined = combine_series(series)
    combined = with_upload_notes(combined, scans, series.values())
    outcome = _analyze_scans(
        pipeline, [combined], file_names, progress=progress, max_slices=max_slices
    )
    return replace(outcome, notes=(*outcome.notes, f"{CHOSEN_PREFIX}: {named}"))


#: How the note naming the series a user chose from a study begins.
CHOSEN_PREFIX = "series chosen by the user"


def _analyze_scans(
    pipeline,
    scans: Sequence[Scan],
    file_names: Sequence[str],
    *,
    progress: Progress | None,
    max_slices: int | None,
) -> Outcome:
    """Run the pipeline over ``scans`` as one case (each scan with its own geometry)."""
    total = sum(scan.n_slices for scan in scans)
    if max_slices is not None and total > max_slices:
        raise ScanError(
            f"the upload holds {total} slices; at most {max_slices} can be analysed at once"
        )
    done = 0
    analysed: list[AnalyzedSlice] = []
    for scan in scans:
        start = done

        def report(share: float, start: int = start, n: int = scan.n_slices) -> None:
            if progress:
                progress(min(1.0, (start + share * n) / total))

        result = pipeline.analyze_scan(scan, progress=report)
        for image, name, slice_result in zip(scan.slices, scan.names, result.slices, strict=True):
            analysed.append(
                AnalyzedSlice(image, name, slice_result, scan.spacing_mm, scan.slice_thickness_mm)
            )
        done += scan.n_slices
    sequences = sorted({s for scan in scans for s in scan.sequences_present})
    formats = sorted({part for scan in scans for part in scan.source_format.split(",")})
    spec_c, spec_s = pipeline.classifier_spec, pipeline.segmenter_spec
    return Outcome(
        slices=tuple(analysed),
        summary=_merge_summary(scans, [s.result.findings for s in analysed]),
        source_name=", ".join(file_names)[:500],
        source_format=",".join(formats),
        sequences_present=tuple(sequences),
        notes=tuple(note for scan in scans for note in scan.notes),
        classifier=(spec_c.name, spec_c.version),
        segmenter=(spec_s.name, spec_s.version),
        threshold=spec_c.threshold,
        arithmetic=pipeline.precision,
        scan_date=_scan_date(scans),
    )


def _scan_date(scans: Sequence[Scan]) -> str | None:
    """The one acquisition day the scans' headers record; None without one, or when they
    disagree (files of different examinations in one upload)."""
    days = {scan.header.acquired for scan in scans if scan.header and scan.header.acquired}
    return days.pop() if len(days) == 1 else None


def save_outcome(
    session,
    *,
    owner_id: int,
    case_reference: str,
    outcome: Outcome,
    signed_in_at: datetime | None = None,
) -> int:
    """Store an outcome for its owner (all or nothing, in the caller's transaction).

    ``signed_in_at``: when the browser session saving it signed in (None: no browser
    session); a session whose account's sign-ins were ended since saves nothing
    (:func:`db.clinical.create_analysis`).

    Returns:
        The new analysis id.

    Raises:
        ValueError: e.g. an empty case reference, or a session signed out meanwhile (nothing
            is stored).
    """
    slices = [
        clinical.SliceInput(
            image=item.image,
            mask=np.asarray(item.result.mask, dtype=bool),
            tumor_probability=float(item.result.tumor_probability),
            has_tumor=bool(item.result.has_tumor),
            findings=item.result.findings.to_dict(),
            source_name=item.name,
            spacing_mm=item.spacing_mm,
            slice_thickness_mm=item.slice_thickness_mm,
        )
        for item in outcome.slices
    ]
    findings = outcome.summary.to_dict() | {
        "sequences_present": list(outcome.sequences_present),
        "scan_notes": list(outcome.notes),
        "scan_date": outcome.scan_date,
    }
    analysis = clinical.create_analysis(
        session,
        owner_id=owner_id,
        case_reference=case_reference,
        slices=slices,
        source_name=outcome.source_name,
        source_format=outcome.source_format,
        classifier=outcome.classifier,
        segmenter=outcome.segmenter,
        decision_threshold=outcome.threshold,
        findings=findings,
        arithmetic=outcome.arithmetic,
        signed_in_at=signed_in_at,
    )
    return int(analysis.id)


def load_case(session, *, owner_id: int, analysis_id: int) -> StoredCase | None:
    """An own analysis with its decoded slices and its case references, or None (missing, or
    someone else's)."""
    analysis = clinical.get_analysis(session, analysis_id=analysis_id, owner_id=owner_id)
    if analysis is None:
        return None
    rows = clinical.get_slices(session, analysis_id=analysis_id, owner_id=owner_id)
    slices = tuple(
        StoredSlice(
            index=row.slice_index,
            name=row.source_name,
            image=array_from_bytes(row.image),
            mask=array_from_bytes(row.mask).astype(bool),
            tumor_probability=row.tumor_probability,
            has_tumor=row.has_tumor,
            findings=dict(row.findings or {}),
            spacing_mm=(row.pixel_spacing_row_mm, row.pixel_spacing_col_mm)
            if row.pixel_spacing_row_mm
            else None,
            slice_thickness_mm=row.slice_thickness_mm,
        )
        for row in rows
    )
    return StoredCase(
        id=int(analysis.id),
        case_reference=analysis.case_reference,
        created_at=analysis.created_at,
        source_name=analysis.source_name,
        source_format=analysis.source_format,
        tumor_probability=analysis.tumor_probability,
        has_tumor=analysis.has_tumor,
        threshold=analysis.decision_threshold,
        classifier=(analysis.classifier_name, analysis.classifier_version),
        segmenter=(analysis.segmenter_name, analysis.segmenter_version),
        findings=dict(analysis.findings or {}),
        slices=slices,
        arithmetic=analysis.arithmetic,
        references=tuple(
            clinical_corrections.reference_history(
                session, analysis_id=analysis_id, owner_id=owner_id
            )
        ),
        entered_in_error_at=analysis.entered_in_error_at,
        entered_in_error_reason=analysis.entered_in_error_reason,
    )


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) array as PNG (lossless)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(
            f"expected a uint8 (H, W) or (H, W, 3) array, got {array.dtype} {array.shape}"
        )
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
