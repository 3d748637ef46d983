"""Reading uploaded or stored scans into one plain value, with clear errors.

Every format a clinic hands us ends up as a :class:`Scan`: a stack of
``(N, H, W, 3)`` uint8 slices in the Kaggle LGG channel order (pre-contrast,
FLAIR, post-contrast), plus what we know about the geometry (pixel spacing,
slice thickness) and which MR sequences were really present.

Supported: TIFF (single or multi-page; a multi-page TIFF is a case), PNG, JPEG,
DICOM (one file, a multi-frame file, or a series of files ordered by patient
position) and NIfTI (``.nii`` / ``.nii.gz``; axial slices of a volume). A ZIP of
such files (e.g. a study exported from a PACS) is unpacked in memory by
:func:`read_uploads` (:func:`expand_archives`).

Anything else raises :class:`ScanError`, a ``ValueError`` whose message says in
plain words what is wrong (empty, not an image, truncated, wrong extension,
absurd size, unsupported channels or dtype, a binary mask instead of a scan).
The readers never let another exception escape, so callers can show the
message to a user as it is.

The format decoders live in :mod:`brainloc.scan_readers`; this module holds the
public API, format detection and the normalisation every format shares.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from brainloc.preprocessing import CHANNELS
from brainloc.settings import scan_limits

logger = logging.getLogger(__name__)

#: The model channels, in order (the one definition lives in brainloc.preprocessing).
ALL_SEQUENCES = CHANNELS
FLAIR_ONLY = ("FLAIR",)

#: Smallest side we accept; below this there is nothing to analyse.
MIN_SIDE = 32
#: Largest case we accept, in pixels over all slices (192 MB once stored as uint8 RGB).
MAX_TOTAL_PIXELS = 64 * 1024 * 1024
# The deployment's settings (brainloc.settings.scan_limits, read from the environment so that
# a small server can lower them; the memory an upload takes grows with them):
# - the largest slice in pixels and the most slices of a case (BRAINLOC_MAX_IMAGE_PIXELS,
#   BRAINLOC_MAX_SLICES);
# - the most pixels the images of one upload hold together (BRAINLOC_MAX_UPLOAD_PIXELS,
#   UploadPixels): each file is checked on its own before decoding, but many small files can
#   each decode to a large image (a 22 KB PNG of a smooth 4096 x 4096 image is 48 MB read);
# - the most megabytes one file's pixels take once decoded, as its header declares them
#   (samples per pixel and bytes per sample: a 2 MB TIFF of four float64 pages took 5.8 GB to
#   read), and a .nii.gz once decompressed (BRAINLOC_MAX_DECODED_MB);
# - the most megabytes the ZIP archives of one upload unpack to together, a zip-bomb guard
#   (BRAINLOC_MAX_ARCHIVE_MB).
#: Most files one ZIP upload may hold.
MAX_ARCHIVE_MEMBERS = 10_000

FORMAT_NAMES = {
    "tiff": "TIFF",
    "png": "PNG",
    "jpeg": "JPEG",
    "dicom": "DICOM",
    "nifti": "NIfTI",
}
#: File-name endings and the format their content must have.
EXTENSIONS = {
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
}
#: Image formats we recognise only to name them in the error message.
_OTHER_MAGIC = {
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"RIFF": "WebP/RIFF",
    b"%PDF": "PDF",
    b"PK\x03\x04": "ZIP archive",
}


class ScanError(ValueError):
    """A file that cannot be analysed; the message is written for the user."""


@dataclass(frozen=True)
class SeriesHeader:
    """What a DICOM series' header says it is, for recognising the sequences of a study.

    Attributes:
        description: SeriesDescription, else ProtocolName (e.g. "AX T2 FLAIR"), or None.
        plane: "axial", "coronal" or "sagittal" (the patient axis closest to the slice
            normal, from ImageOrientationPatient), or None when not recorded.
        contrast_agent: the header names a contrast agent (ContrastBolusAgent).
        orientation: ImageOrientationPatient: the unit directions (patient coordinates) in
            which a row's columns, then a column's rows, advance; None when not recorded.
        acquired: the day the scan was made, ISO "YYYY-MM-DD" (StudyDate, else SeriesDate,
            AcquisitionDate or ContentDate), or None when no valid date is recorded.
    """

    description: str | None = None
    plane: str | None = None
    contrast_agent: bool = False
    orientation: tuple[float, float, float, float, float, float] | None = None
    acquired: str | None = None


@dataclass(frozen=True)
class Scan:
    """One uploaded image or case, normalised for the models.

    Attributes:
        slices: uint8 array (N, H, W, 3), channels pre-contrast, FLAIR,
            post-contrast. A single-sequence image is copied into all three.
        source_format: "tiff", "png", "jpeg", "dicom" or "nifti".
        names: one label per slice, e.g. ``"case.tif"`` or ``"case.tif [page 3]"``.
        sequences_present: the sequences really in the file: all three for an
            RGB Kaggle slice, ``("FLAIR",)`` for a single-channel image.
        spacing_mm: (row, column) pixel spacing in mm, when the file says so (a zero,
            negative or non-finite value, as a malformed header can hold, counts as unknown).
        slice_thickness_mm: distance between slices in mm, when known (the same rule); None
            for a DICOM series with slices missing, which has no one distance (its note
            names the gap, :mod:`brainloc.scan_stack`).
        notes: plain-language remarks about conversions that were made.
        positions_mm: each slice's position in patient coordinates (mm): DICOM
            ImagePositionPatient, when every slice of a series records it, or a NIfTI
            volume's affine applied to each shown slice's first pixel.
        header: what a DICOM file or series says it shows, when it is one.
        gaps_after: the indices k of slices with slices missing between them and slice
            k + 1 (a DICOM series with a gap, :func:`brainloc.scan_stack.gaps_after`): the
            volume rule does not join tumor calls across a gap.
    """

    slices: np.ndarray
    source_format: str
    names: tuple[str, ...]
    sequences_present: tuple[str, ...] = ALL_SEQUENCES
    spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    notes: tuple[str, ...] = field(default=())
    positions_mm: tuple[tuple[float, float, float], ...] | None = None
    header: SeriesHeader | None = None
    gaps_after: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Measurements in mm need a usable geometry; without it they are given in pixels.
        if self.spacing_mm is not None and not all(_usable_mm(v) for v in self.spacing_mm):
            object.__setattr__(self, "spacing_mm", None)
        if self.slice_thickness_mm is not None and not _usable_mm(self.slice_thickness_mm):
            object.__setattr__(self, "slice_thickness_mm", None)

    @property
    def n_slices(self) -> int:
        return int(self.slices.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of every slice."""
        return int(self.slices.shape[1]), int(self.slices.shape[2])

    @property
    def single_sequence(self) -> bool:
        return self.sequences_present == FLAIR_ONLY


def _usable_mm(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _suffix(filename: str) -> str:
    name = filename.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def detect_format(data: bytes) -> str | None:
    """Name the format of ``data`` from its first bytes, or None if unknown."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[128:132] == b"DICM":
        return "dicom"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if len(data) >= 348 and data[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if len(data) >= 540 and data[4:8] in (b"n+2\x00", b"ni2\x00"):
        return "nifti"
    return None


def _describe_unknown(data: bytes) -> str:
    for magic, label in _OTHER_MAGIC.items():
        if data.startswith(magic):
            return f"a {label} file, which is not a supported scan format"
    sample = data[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "a text file, not an image"
    return "not an image in a supported format (TIFF, PNG, JPEG, DICOM, NIfTI)"


def refuse_repeated_sequences(files: Mapping[str, Iterable[bytes]]) -> None:
    """Refuse one upload given for two sequences (the same FLAIR file chosen as pre-contrast,
    FLAIR and post-contrast would be analysed as a full three-sequence case). ``files``: each
    sequence's file contents."""
    seen: dict[frozenset[str], str] = {}
    for name, contents in files.items():
        digests = frozenset(hashlib.sha256(bytes(data)).hexdigest() for data in contents)
        if digests in seen:
            raise ScanError(
                f"the {seen[digests]} and {name} uploads are the same file(s); choose each "
                "sequence's own"
            )
        seen[digests] = name


@contextmanager
def readable(label: str) -> Iterator[None]:
    """The safety net that keeps tracebacks from users: anything but a :class:`ScanError`
    raised while reading ``label`` (a file, or a series of files) becomes one that says the
    file is truncated or corrupt (or too large to open), and the original goes to the log."""
    try:
        yield
    except ScanError:
        raise
    except MemoryError as exc:
        raise ScanError(f"{label}: the image is too large to open") from exc
    except Exception as exc:  # noqa: BLE001 - the safety net
        # %r: a name from an upload (a ZIP member's) may hold a line break, which would
        # otherwise start a forged line in the server's log.
        logger.info("unreadable upload %r", label, exc_info=True)
        raise ScanError(f"{label}: the file is truncated or corrupt and cannot be read") from exc


def read_scan(data: bytes, filename: str) -> Scan:
    """Read one uploaded file.

    Args:
        data: the file's bytes.
        filename: its name as uploaded; the extension must match the content.

    Returns:
        A :class:`Scan`; a multi-page TIFF, multi-frame DICOM or NIfTI volume
        gives several slices.

    Raises:
        ScanError: with a message fit for the user.
    """
    # Imported here because the readers import Scan and ScanError from this module.
    from brainloc import scan_readers

    label = Path(filename).name or "file"
    with readable(label):
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ScanError(f"{label}: expected file bytes, got {type(data).__name__}")
        data = bytes(data)
        if not data:
            raise ScanError(f"{label}: the file is empty")
        kind = detect_format(data)
        suffix = _suffix(label)
        if kind == "gzip":
            if suffix != ".nii.gz":
                raise ScanError(
                    f"{label}: gzip-compressed file; only compressed NIfTI (.nii.gz) is supported"
                )
            limit = scan_limits().max_decoded_mb * 2**20
            data = scan_readers.gunzip_capped(data, label, limit)
            kind = detect_format(data)
            if kind != "nifti":
                raise ScanError(f"{label}: the compressed content is not a NIfTI volume")
        if kind is None and _may_be_raw_dicom(label):
            # DICOM written without the 128-byte preamble is rare but legal.
            kind = "dicom" if scan_readers.looks_like_raw_dicom(data) else None
        if kind is None:
            expected = EXTENSIONS.get(suffix)
            what = _describe_unknown(data)
            if expected:
                raise ScanError(f"{label}: not a valid {FORMAT_NAMES[expected]} file; it is {what}")
            raise ScanError(f"{label}: {what}")
        expected = EXTENSIONS.get(suffix)
        if suffix and expected is None and not (kind == "dicom" and _may_be_raw_dicom(label)):
            raise ScanError(
                f"{label}: the content is {FORMAT_NAMES[kind]} but the name ends in "
                f"'{suffix}'; rename it with a {FORMAT_NAMES[kind]} extension"
            )
        if expected is not None and expected != kind:
            raise ScanError(
                f"{label}: the name ends in '{suffix}' ({FORMAT_NAMES[expected]}) but the "
                f"content is {FORMAT_NAMES[kind]}; the extension does not match the file"
            )
        reader = scan_readers.READERS[kind]
        return reader(data, label)


def oversized_upload(files: Iterable[tuple[str, int]], limit_mb: int) -> str | None:
    """Why the upload is refused when one of its files (``(name, size in bytes)``) is larger
    than ``limit_mb`` megabytes (``BRAINLOC_MAX_UPLOAD_MB``); None when all fit. The browser
    refuses such a file already; this holds for a request that did not go through it."""
    for name, size in files:
        if size > limit_mb * 1024 * 1024:
            return (
                f"{Path(name).name or 'file'} is {size / 1024 / 1024:.1f} MB; the largest "
                f"file accepted here is {limit_mb} MB. Upload the series as several files or "
                "ask your administrator (BRAINLOC_MAX_UPLOAD_MB)."
            )
    return None


def read_scan_path(path: Path | str) -> Scan:
    """Read one file from disk (see :func:`read_scan`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScanError(f"{path.name}: cannot open the file ({exc.strerror or exc})") from exc
    return read_scan(data, path.name)


def read_uploads(files: Iterable[tuple[str, bytes]]) -> list[Scan]:
    """Read several uploaded files at once, together at most ``BRAINLOC_MAX_UPLOAD_PIXELS``
    (:class:`UploadPixels`).

    DICOM files are grouped into series (by SeriesInstanceUID) and each series
    becomes one :class:`Scan` ordered by slice position. Single slices named like
    the Kaggle layout's ``<case>_<n>.tif`` that share a case name and a size become
    one :class:`Scan` ordered by ``n`` (the volume they were cut from, which gets
    the volume rule of :mod:`brainloc.decision`). Every other file is a
    :class:`Scan` of its own, in the order given. A ZIP is first replaced by the image
    files inside it (:func:`expand_archives`); what it skipped is noted on the first scan.
    A Kaggle ground-truth mask ``<case>_<n>_mask.tif`` uploaded together with its scan
    ``<case>_<n>.tif`` (a case folder, or a ZIP of it) is left out with a note, as the
    ``analyze`` command leaves it out of a folder; a mask uploaded without its scan is
    still refused as a mask.

    Raises:
        ScanError: naming the first file that cannot be read.
    """
    from brainloc import scan_readers

    files = list(files)
    if not files:
        raise ScanError("no files were given")
    files, archive_notes = expand_archives(files)
    files, mask_notes = _drop_masks_beside_scans(files)
    archive_notes = [*archive_notes, *mask_notes]
    dicom = [(name, data) for name, data in files if _is_dicom(data, name)]
    budget = UploadPixels()
    read = []
    for name, data in files:
        if not _is_dicom(data, name):
            read.append(read_scan(data, name))
            budget.add(read[-1])
    scans = _case_volumes(read)
    if dicom:
        scans.extend(scan_readers.read_dicom_series(dicom, budget=budget))
    if archive_notes and scans:
        scans[0] = replace(scans[0], notes=(*scans[0].notes, *archive_notes))
    return scans


class UploadPixels:
    """The pixels of one upload's scans, counted as each is read: more than the deployment's
    ``BRAINLOC_MAX_UPLOAD_PIXELS`` together refuses the upload there, before the rest is read.
    (A running total: summing all the scans so far after each one took about 47 s for a ZIP
    of 10,000 small files.)"""

    def __init__(self) -> None:
        self.total = 0
        self.limit = scan_limits().max_upload_pixels

    def add(self, scan: Scan) -> None:
        """Count ``scan``; raises :class:`ScanError` once the upload holds too many pixels."""
        self.total += scan.n_slices * scan.shape[0] * scan.shape[1]
        if self.total > self.limit:
            raise ScanError(
                f"the upload's images hold more than {self.limit:,} pixels together, more than "
                "this server reads at once; upload fewer files at once or ask your "
                "administrator (BRAINLOC_MAX_UPLOAD_PIXELS)"
            )


def _drop_masks_beside_scans(
    files: list[tuple[str, bytes]],
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Leave out each ``<case>_<n>_mask.tif`` whose ``<case>_<n>.tif`` is among ``files``
    (names compared without folders and case); returns the rest and a note if any was left out."""
    from brainloc.kaggle_layout import SLICE_RE, mask_path

    bases = [Path(name).name for name, _ in files]
    masks = {mask_path(Path(base)).name.lower() for base in bases if SLICE_RE.match(base)}
    kept = [item for item, base in zip(files, bases, strict=True) if base.lower() not in masks]
    left_out = len(files) - len(kept)
    if not left_out:
        return files, []
    return kept, [
        f"{left_out} tumor mask file(s) (<case>_<n>_mask.tif) uploaded beside their scans "
        "were left out; only the scans were analysed"
    ]


def _is_zip(data: bytes) -> bool:
    return bytes(data[:4]) == b"PK\x03\x04"


#: Files a PACS or an operating system puts beside the images in an exported study.
_NOT_SCANS = ("dicomdir", "thumbs.db", "desktop.ini")


def _archive_scan(base: str, data: bytes) -> bool:
    """Whether an archive member (``base``: its file name) is an image file we read."""
    if base.lower() in _NOT_SCANS or base.startswith("."):
        return False
    if _is_dicom(data, base):
        # A study export also holds DICOM objects without pixels (structured reports,
        # presentation states): no PixelData element (7FE0,0010), nothing to analyse.
        return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data
    kind = detect_format(data)
    if kind == "gzip":
        return _suffix(base) == ".nii.gz"
    return kind in ("tiff", "png", "jpeg", "nifti")


def expand_archives(
    files: Sequence[tuple[str, bytes]],
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Replace every ZIP upload by the image files inside it (e.g. a study exported from a
    PACS, whose DICOM files often have no file extension).

    Members are named by their file name only, so numbered Kaggle slices and DICOM series
    group as if uploaded one by one. Folders, ``DICOMDIR``, hidden files, DICOM objects
    without pixels and anything that is not a TIFF, PNG, JPEG, DICOM or NIfTI file are
    skipped and counted in a note; ZIPs inside the ZIP are not opened.

    Returns:
        The files, and one note per archive that had members skipped.

    Raises:
        ScanError: a damaged or password-protected archive, one over
            :data:`MAX_ARCHIVE_MEMBERS` files, archives over ``BRAINLOC_MAX_ARCHIVE_MB``
            unpacked together, or one without any image file.
    """
    limit_mb = scan_limits().max_archive_mb
    expanded: list[tuple[str, bytes]] = []
    notes: list[str] = []
    unpacked = 0
    for name, data in files:
        if not _is_zip(data):
            expanded.append((name, data))
            continue
        label = Path(name).name or "archive"
        members = _read_archive(label, bytes(data), limit_mb, unpacked)
        unpacked += sum(len(content) for _, content in members)
        scans = [(Path(member).name, content) for member, content in members]
        scans = [(base, content) for base, content in scans if _archive_scan(base, content)]
        if not scans:
            raise ScanError(
                f"{label}: the ZIP archive holds no image files (TIFF, PNG, JPEG, DICOM or NIfTI)"
            )
        skipped = len(members) - len(scans)
        if skipped:
            notes.append(
                f"{label}: {len(scans)} image file(s) read; {skipped} other file(s) in the "
                "archive skipped (e.g. DICOMDIR, reports, non-image files)"
            )
        expanded.extend(scans)
    return expanded, notes


def _read_archive(
    label: str, data: bytes, limit_mb: int, unpacked: int = 0
) -> list[tuple[str, bytes]]:
    """The (path, bytes) of every file in a ZIP, within the count limit and ``limit_mb``
    megabytes unpacked; ``unpacked``: the bytes that the upload's earlier archives unpacked to,
    which count towards that limit."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [info for info in archive.infolist() if not info.is_dir()]
            entries = [info for info in entries if not info.filename.startswith("__MACOSX/")]
            if len(entries) > MAX_ARCHIVE_MEMBERS:
                raise ScanError(
                    f"{label}: the ZIP archive holds {len(entries)} files; at most "
                    f"{MAX_ARCHIVE_MEMBERS} are accepted"
                )
            if any(info.flag_bits & 0x1 for info in entries):
                raise ScanError(
                    f"{label}: the ZIP archive is password-protected; unpack it and upload "
                    "the files"
                )
            left = limit_mb * 2**20 - unpacked
            members = []
            for info in entries:
                # Read at most what is left: the sizes in the archive's directory can lie.
                with archive.open(info) as member:
                    content = member.read(left + 1)
                left -= len(content)
                if left < 0:
                    what = (
                        "the upload's ZIP archives unpack"
                        if unpacked
                        else "the ZIP archive unpacks"
                    )
                    raise ScanError(
                        f"{label}: {what} to more than {limit_mb:,} MB; upload fewer files at "
                        "once or ask your administrator (BRAINLOC_MAX_ARCHIVE_MB)"
                    )
                members.append((info.filename, content))
            return members
    except ScanError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise ScanError(f"{label}: the ZIP archive is damaged and cannot be read") from exc
    except (NotImplementedError, RuntimeError) as exc:
        raise ScanError(
            f"{label}: the ZIP archive uses a compression or encryption this server cannot "
            "read; unpack it and upload the files"
        ) from exc


def _case_volumes(scans: list[Scan]) -> list[Scan]:
    """Join single-slice ``<case>_<n>.tif`` scans of one case (same size) with consecutive
    ``n`` into one Scan ordered by ``n``; each volume takes the place of its first file, the
    rest keep theirs."""
    from brainloc.kaggle_layout import SLICE_RE, consecutive_runs

    groups: dict[tuple, list[tuple[int, Scan]]] = {}
    order: list[tuple | Scan] = []
    for scan in scans:
        match = SLICE_RE.match(scan.names[0]) if scan.n_slices == 1 else None
        if match is None or scan.source_format != "tiff":
            order.append(scan)
            continue
        key = (match["case"], scan.shape, scan.sequences_present, scan.spacing_mm)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((int(match["index"]), scan))
    joined = []
    for item in order:
        if isinstance(item, Scan):
            joined.append(item)
            continue
        numbered = groups[item]
        for run in consecutive_runs([number for number, _ in numbered]):
            joined.append(_join([numbered[k][1] for k in run]))
    return joined


def _join(members: list[Scan]) -> Scan:
    """One Scan of single-slice scans, in the order given (a lone scan is returned as is)."""
    if len(members) == 1:
        return members[0]
    return Scan(
        slices=np.concatenate([scan.slices for scan in members]),
        source_format="tiff",
        names=tuple(scan.names[0] for scan in members),
        sequences_present=members[0].sequences_present,
        spacing_mm=members[0].spacing_mm,
        notes=tuple(dict.fromkeys(note for scan in members for note in scan.notes)),
    )


def read_paths(paths: Sequence[Path | str]) -> list[Scan]:
    """Read files from disk like :func:`read_uploads` (DICOM files form series)."""
    files = []
    for path in map(Path, paths):
        try:
            files.append((path.name, path.read_bytes()))
        except OSError as exc:
            raise ScanError(f"{path.name}: cannot open the file ({exc.strerror or exc})") from exc
    return read_uploads(files)


#: The note a single-sequence image carries (its one channel is copied into all three).
SINGLE_SEQUENCE_NOTE = (
    "a single sequence was read as FLAIR and copied into all three model channels"
)
#: The note a case combined from three single-sequence uploads carries.
COMBINED_NOTE = (
    "pre-contrast, FLAIR and post-contrast came as separate series and were combined slice by "
    "slice; this is right only if the three series are co-registered (same slice positions "
    "and orientation)"
)
#: Pixel spacings that differ by more than this share belong to different grids.
SPACING_TOLERANCE = 0.01
#: Slice positions (DICOM or NIfTI, patient coordinates) further apart than this belong to
#: other slices.
POSITION_TOLERANCE_MM = 0.5


def sequence_scan(name: str, scans: Sequence[Scan]) -> Scan:
    """The one scan that the files given for sequence ``name`` read as.

    Raises:
        ScanError: they read as several scans (e.g. unrelated slices, or two series).
    """
    if len(scans) != 1:
        raise ScanError(
            f"the {name} upload holds {len(scans)} separate scans; give one image, one "
            "volume or one DICOM series per sequence"
        )
    return scans[0]


def combine_sequences(series: dict[str, Scan]) -> Scan:
    """One three-channel case from three single-sequence series of it.

    Args:
        series: a :class:`Scan` per model channel (``ALL_SEQUENCES``: pre-contrast, FLAIR,
            post-contrast), each read from a file or series holding one sequence.

    The series must cover the same slices on the same grid: the same number of slices of the
    same size and, where the files say so, the same pixel spacing, slice distance and slice
    positions (DICOM and NIfTI: within 0.5 mm). Their
    intensities stay as each was read (8-bit data as it is; other data rescaled per series,
    as every channel of a multi-channel file is). The slice names are the FLAIR series'.

    Raises:
        ScanError: a sequence is missing, holds more than one sequence, or does not match the
            FLAIR series (message fit for the user).
    """
    missing = [name for name in ALL_SEQUENCES if name not in series]
    if missing:
        raise ScanError(f"the {' and '.join(missing)} series is missing")
    for name in ALL_SEQUENCES:
        if not series[name].single_sequence:
            raise ScanError(
                f"the {name} upload holds all three sequences already; upload it as one case "
                "instead, or give one sequence per upload"
            )
    flair = series["FLAIR"]
    for name in ALL_SEQUENCES:
        scan = series[name]
        if scan.n_slices != flair.n_slices:
            raise ScanError(
                f"the {name} series has {scan.n_slices} slice(s) and FLAIR {flair.n_slices}; "
                "the three sequences must cover the same slices"
            )
        if scan.shape != flair.shape:
            raise ScanError(
                f"the {name} slices are {scan.shape[0]}×{scan.shape[1]} pixels and the FLAIR "
                f"slices {flair.shape[0]}×{flair.shape[1]}; the three sequences must be "
                "co-registered on one grid"
            )
        for what, mine, theirs in (
            ("pixel spacing", scan.spacing_mm, flair.spacing_mm),
            ("slice distance", scan.slice_thickness_mm, flair.slice_thickness_mm),
        ):
            if mine is None or theirs is None:
                continue
            if not np.allclose(mine, theirs, rtol=SPACING_TOLERANCE, atol=0.0):
                raise ScanError(
                    f"the {name} series has a {what} of {mine} mm and FLAIR {theirs} mm; "
                    "the three sequences must be co-registered on one grid"
                )
        if scan.positions_mm is not None and flair.positions_mm is not None:
            apart = float(np.max(np.abs(np.subtract(scan.positions_mm, flair.positions_mm))))
            if apart > POSITION_TOLERANCE_MM:
                raise ScanError(
                    f"the {name} slices lie up to {apart:.1f} mm away from the FLAIR slices "
                    "(positions in the file headers); the three sequences must be co-registered "
                    "on one grid"
                )
    slices = np.stack([series[name].slices[..., 0] for name in ALL_SEQUENCES], axis=-1)
    formats = sorted({series[name].source_format for name in ALL_SEQUENCES})
    notes = tuple(
        dict.fromkeys(
            note
            for name in ALL_SEQUENCES
            for note in series[name].notes
            if note != SINGLE_SEQUENCE_NOTE
        )
    )
    return Scan(
        slices=np.ascontiguousarray(slices),
        source_format=",".join(formats),
        names=flair.names,
        sequences_present=ALL_SEQUENCES,
        spacing_mm=flair.spacing_mm,
        slice_thickness_mm=flair.slice_thickness_mm,
        notes=(*notes, COMBINED_NOTE),
        positions_mm=flair.positions_mm,
        # The case lies on the FLAIR series' slices, so FLAIR's header describes it.
        header=flair.header,
        gaps_after=flair.gaps_after,
    )


def _may_be_raw_dicom(name: str) -> bool:
    """Whether a file of this name may be DICOM without the preamble: a DICOM extension, none
    (a PACS export's ``IM0001``) or a number (UID-named files, ``1.2.840.113619.2.55.3.7``)."""
    suffix = _suffix(name)
    return suffix in (".dcm", ".dicom", ".ima", "") or suffix[1:].isdigit()


def _is_dicom(data: bytes, name: str) -> bool:
    from brainloc import scan_readers

    if detect_format(data) == "dicom":
        return True
    return _may_be_raw_dicom(name) and scan_readers.looks_like_raw_dicom(data)
