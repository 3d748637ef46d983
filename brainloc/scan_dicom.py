"""DICOM decoding with pydicom: one file (single or multi-frame) or a series.

A series (or an enhanced multi-frame file's frames) must be one stack of slices and is
ordered by slice position along the slice normal, falling back to InstanceNumber, then to
the file name; those rules live in :mod:`brainloc.scan_stack`. Pixel spacing (PixelSpacing,
row then column, mm) and the distance between slices are kept for the findings; slice
positions and orientation for combining series (:mod:`brainloc.scan_align`); the series
description, plane and contrast agent for recognising a study's sequences
(:mod:`brainloc.study`). A deflated file (Deflated Explicit VR Little Endian) is refused
unread: pydicom inflates it whole, without a limit.
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import datetime

import numpy as np

from brainloc import scan_stack
from brainloc.scan_enhanced import frame_headers, is_enhanced
from brainloc.scan_normalize import build_scan, check_dimensions
from brainloc.scans import (
    SPACING_TOLERANCE,
    Scan,
    ScanError,
    SeriesHeader,
    UploadPixels,
    readable,
)
from brainloc.settings import scan_limits


def looks_like_raw_dicom(data: bytes) -> bool:
    """True for DICOM written without the preamble (starts with a group 0002/0008 tag)."""
    return len(data) > 16 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3] == 0


def _dataset(data: bytes, label: str):
    import pydicom

    try:
        syntax = _transfer_syntax(data)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad input
        raise ScanError(f"{label}: the DICOM file is truncated or corrupt") from exc
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        # pydicom inflates such a file whole, without a limit, before any header can be
        # checked: 4 MB of it can hold 4 GB of zeros.
        raise ScanError(
            f"{label}: DICOM compression '{syntax.name}' cannot be read here; "
            "export the images uncompressed"
        )
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad input
        raise ScanError(f"{label}: the DICOM file is truncated or corrupt") from exc


def _transfer_syntax(data: bytes):
    """The TransferSyntaxUID of the file's meta information, read as ``dcmread`` reads it
    (pydicom has no public reader of a file-like's meta), or None when it names none."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    stream = io.BytesIO(data)
    read_preamble(stream, True)
    return _read_file_meta_info(stream).get("TransferSyntaxUID")


def _check_image(ds, label: str) -> tuple[int, int, int]:
    if "PixelData" not in ds:
        sop = getattr(getattr(ds, "SOPClassUID", None), "name", None) or "no image data"
        raise ScanError(f"{label}: this DICOM file holds no image ({sop})")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ScanError(f"{label}: the DICOM image size is missing or malformed") from exc
    check_dimensions(label, rows, cols, frames)
    return rows, cols, frames


def _pixels(ds, label: str) -> np.ndarray:
    """Decoded pixels in modality units: (frames, H, W) or (frames, H, W, 3), float or int."""
    from pydicom.pixels import apply_modality_lut

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        array = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        if "exceptions were raised by all available plugins" in str(exc):
            # A decoder exists but the compressed data is broken.
            raise ScanError(f"{label}: the DICOM pixel data is truncated or corrupt") from exc
        name = getattr(syntax, "name", "this transfer syntax")
        raise ScanError(
            f"{label}: DICOM compression '{name}' cannot be decoded here; "
            "export the images uncompressed"
        ) from exc
    except Exception as exc:  # noqa: BLE001
        raise ScanError(f"{label}: the DICOM pixel data is truncated or corrupt") from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if photometric.startswith("MONOCHROME"):
        modality_lut = "RescaleSlope" in ds or "ModalityLUTSequence" in ds
        if modality_lut:
            array = apply_modality_lut(array, ds)
        if photometric == "MONOCHROME1":
            # MONOCHROME1 shows low values as white. Inverting about the range the header
            # allows (not each file's own maximum) keeps one stored value one intensity in
            # every slice of a series.
            low, high = _stored_range(ds)
            if modality_lut:
                low, high = (float(v) for v in apply_modality_lut(np.array([low, high]), ds))
            array = low + high - array
    elif photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        array = apply_color_lut(array, ds)
    if frames == 1:
        array = array[np.newaxis]
    return array


def _stored_range(ds) -> tuple[int, int]:
    """The smallest and largest stored pixel value the header allows (BitsStored, signed or
    unsigned by PixelRepresentation)."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _spacing(ds) -> tuple[float, float] | None:
    value = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        return (float(value[0]), float(value[1])) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _thickness(ds) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(ds.get(keyword) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return None


def read_dicom(data: bytes, label: str) -> Scan:
    """Read one DICOM file (a multi-frame file gives several slices).

    An enhanced multi-frame file is read like a series of its frames
    (:func:`_enhanced_scan`): ordered by position, with the geometry of its functional groups.
    """
    ds = _dataset(data, label)
    _, _, frames = _check_image(ds, label)
    if frames > 1 and is_enhanced(ds):
        return _enhanced_scan(ds, label, frames)
    array = _pixels(ds, label)
    names = (label,) if frames == 1 else tuple(f"{label} [frame {k + 1}]" for k in range(frames))
    position = scan_stack.patient_position(ds)
    return build_scan(
        array,
        label=label,
        source_format="dicom",
        names=names,
        spacing_mm=_spacing(ds),
        slice_thickness_mm=_thickness(ds),
        # A classic multi-frame file records no position per frame.
        positions_mm=(position,) if frames == 1 and position else None,
        header=_header(ds),
    )


def _enhanced_scan(ds, label: str, frames: int) -> Scan:
    """An enhanced multi-frame file's frames as one stack, ordered by position along the slice
    normal, each scaled by its own RescaleSlope/Intercept (:mod:`brainloc.scan_enhanced`)."""
    from pydicom.pixels import apply_modality_lut

    items = [
        (f"{label} [frame {k + 1}]", header) for k, header in enumerate(frame_headers(ds, frames))
    ]
    scan_stack.check_one_stack(items, label)
    index = {id(header): k for k, (_, header) in enumerate(items)}
    ordered, distance = scan_stack.order(items)
    stored = _pixels(ds, label)
    arrays = []
    for _, header in ordered:
        pixels = stored[index[id(header)]]
        if "RescaleSlope" in header and "RescaleSlope" not in ds:
            pixels = apply_modality_lut(pixels, header).astype(np.float32)
        arrays.append(pixels)
    return _stack_scan(arrays, ordered, distance, label)


def _header(ds) -> SeriesHeader:
    """What the series says it shows: description, plane and whether contrast was given."""
    description = None
    for keyword in ("SeriesDescription", "ProtocolName"):
        value = str(ds.get(keyword) or "").strip()
        if value:
            description = value[:120]
            break
    orientation = scan_stack.orientation(ds)
    agent = str(ds.get("ContrastBolusAgent") or "").strip()
    return SeriesHeader(
        description=description,
        plane=scan_stack.plane(ds),
        contrast_agent=bool(agent),
        orientation=None if orientation is None else tuple(float(v) for v in orientation),
        acquired=_acquired(ds),
    )


def _acquired(ds) -> str | None:
    """The scan's day as "YYYY-MM-DD" from the first valid DICOM date (DA, "YYYYMMDD")."""
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        text = str(ds.get(keyword) or "").strip()
        try:
            return datetime.strptime(text[:8], "%Y%m%d").date().isoformat()
        except ValueError:
            continue
    return None


def read_dicom_series(
    files: list[tuple[str, bytes]], budget: UploadPixels | None = None
) -> list[Scan]:
    """Read DICOM files as series: one :class:`Scan` per SeriesInstanceUID, and one per
    multi-frame file.

    When the files hold several series (a study), a series with more slices than a case may
    have (``BRAINLOC_MAX_SLICES``; e.g. a perfusion series' time points), or one that is not
    one stack of slices (a three-plane localizer, several echoes at each position), is left out
    and named in a note on the first scan instead of refusing the whole upload; a lone such
    series is refused. Repeated files of one image (the same SOPInstanceUID) are read once.
    ``budget``: the upload's pixel count, shared with its other scans
    (:class:`brainloc.scans.UploadPixels`, counted after each series).
    """
    from brainloc.scans import MAX_ARCHIVE_MEMBERS

    if len(files) > MAX_ARCHIVE_MEMBERS:
        raise ScanError(
            f"{len(files)} DICOM files in one upload; at most {MAX_ARCHIVE_MEMBERS} are accepted"
        )
    if len(files) == 1:
        name, data = files[0]
        with readable(name):
            return [read_dicom(data, name)]
    groups: dict[str, list[tuple[str, object]]] = {}
    multiframe: list[tuple[str, bytes]] = []
    for name, data in files:
        with readable(name):
            ds = _dataset(data, name)
            _check_image(ds, name)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            series = str(ds.get("SeriesInstanceUID", ""))
        if frames > 1:
            multiframe.append((name, data))
            continue
        groups.setdefault(series, []).append((name, ds))
    max_slices = scan_limits().max_slices
    several = len(groups) + len(multiframe) > 1
    scans, left_out, not_stacks = [], [], []
    for items in groups.values():
        items, copies = scan_stack.without_copies(items)
        described = _header(items[0][1]).description
        named = f"'{described}'" if described else f"a series ({items[0][0]} …)"
        if several and len(items) > max_slices:
            left_out.append(f"{named} ({len(items)} files)")
            continue
        label = f"DICOM series of {items[0][0]} ({len(items)} files)"
        try:
            scan_stack.check_one_stack(items, label)
        except scan_stack.NotOneStack as exc:
            if not several:
                raise
            not_stacks.append(f"{named} ({exc.reason})")
            continue
        with readable(label):
            scan = _series_scan(items)
        if copies:
            note = f"{copies} repeated file(s) of the same image (same SOPInstanceUID) left out"
            scan = replace(scan, notes=(*scan.notes, note))
        scans.append(scan)
        if budget is not None:
            budget.add(scan)
    for name, data in multiframe:
        try:
            with readable(name):
                scans.append(read_dicom(data, name))
        except scan_stack.NotOneStack as exc:
            if not several:
                raise
            not_stacks.append(f"{name} ({exc.reason})")
            continue
        if budget is not None:
            budget.add(scans[-1])
    notes = []
    if left_out:
        notes.append(
            f"DICOM series left out, with more than {max_slices} slices (the most one case may "
            f"have): {', '.join(left_out)}"
        )
    if not_stacks:
        notes.append(f"DICOM series left out, not one stack of slices: {'; '.join(not_stacks)}")
    if notes:
        if not scans:
            raise ScanError("; ".join(notes))
        scans[0] = replace(scans[0], notes=(*scans[0].notes, *notes))
    return scans


def _described(pixels: np.ndarray) -> str:
    """A slice's pixels in words: ``"colour (RGB)"`` or ``"grey"``, with the matrix."""
    kind = "colour (RGB)" if pixels.ndim == 3 else "grey"
    return f"{kind}, {pixels.shape[1]} x {pixels.shape[0]}"


def _series_scan(items: list[tuple[str, object]]) -> Scan:
    items, distance = scan_stack.order(items)
    first_name, first = items[0]
    label = first_name if len(items) == 1 else f"DICOM series ({len(items)} files)"
    size = (int(first.Rows), int(first.Columns))
    check_dimensions(label, size[0], size[1], len(items))
    spacing_first = _spacing(first)
    arrays = []
    for name, ds in items:
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise ScanError(
                f"{name}: {ds.Columns} x {ds.Rows} pixels, but the series' first slice "
                f"{first_name} is {size[1]} x {size[0]}; all slices of a series must match"
            )
        spacing = _spacing(ds)
        with readable(name):
            pixels = _pixels(ds, name)[0]
        # Measurements use the first slice's spacing: a slice on another grid would be
        # measured wrongly (e.g. a 1 mm slice measured as 0.5 mm, a quarter of its area).
        both_known = spacing and spacing_first
        if both_known and not np.allclose(spacing, spacing_first, rtol=SPACING_TOLERANCE):
            raise ScanError(
                f"{name}: a pixel spacing of {spacing[0]} x {spacing[1]} mm, but the series' "
                f"first slice {first_name} has {spacing_first[0]} x {spacing_first[1]} mm; all "
                "slices of a series must match"
            )
        if arrays and pixels.shape != arrays[0].shape:
            raise ScanError(
                f"{name}: its pixels are {_described(pixels)}, but the series' first slice "
                f"{first_name} is {_described(arrays[0])}; all slices of a series must match"
            )
        # Stored integers stay as they are (the rescale note then names their bit depth);
        # a modality LUT's float64 is halved to float32, which holds a slice exactly enough.
        arrays.append(pixels.astype(np.float32) if pixels.dtype == np.float64 else pixels)
    return _stack_scan(arrays, items, distance, label)


def _stack_scan(
    arrays: list[np.ndarray], items: list[tuple[str, object]], distance: float | None, label: str
) -> Scan:
    """One Scan of a stack's slice pixels and their (name, header) pairs, in slice order; the
    geometry is the first slice's, the slice distance ``distance`` when the positions gave one,
    and none when they show a gap (:func:`brainloc.scan_stack.gap_note`, noted)."""
    first = items[0][1]
    positions = [scan_stack.patient_position(ds) for _, ds in items]
    gaps = scan_stack.gaps_after(items, distance)
    gap = scan_stack.gap_note(items, gaps)
    return build_scan(
        np.stack(arrays),
        label=label,
        source_format="dicom",
        names=tuple(name for name, _ in items),
        spacing_mm=_spacing(first),
        # With slices missing there is no one distance between slices, and none is made up
        # from the header: a tumor volume summed over the slices would leave the gap out.
        slice_thickness_mm=None if gap else distance or _thickness(first),
        notes=(gap,) if gap else (),
        positions_mm=tuple(positions) if all(p is not None for p in positions) else None,
        header=_header(first),
        gaps_after=gaps,
    )
