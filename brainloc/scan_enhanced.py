"""The frames of an enhanced (multi-frame) DICOM object as classic per-slice headers.

Enhanced MR objects (and other enhanced multi-frame images, e.g. Siemens XA and Philips
exports) keep what a classic image states at the top level (PixelSpacing, SliceThickness,
SpacingBetweenSlices, ImageOrientationPatient, ImagePositionPatient, RescaleSlope and
RescaleIntercept) in functional group macros instead: shared by every frame
(SharedFunctionalGroupsSequence) or given per frame (PerFrameFunctionalGroupsSequence), and
the frames need not be stored in slice order. :func:`frame_headers` flattens those macros
into one plain header per frame, so that the code reading a series of classic files
(:mod:`brainloc.scan_dicom`, :mod:`brainloc.scan_stack`) orders, checks and measures the
frames the same way.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

_SHARED = "SharedFunctionalGroupsSequence"
_PER_FRAME = "PerFrameFunctionalGroupsSequence"


def is_enhanced(ds: Dataset) -> bool:
    """Whether the dataset keeps its geometry in functional groups."""
    return _SHARED in ds or _PER_FRAME in ds


def _macro_elements(group: Dataset | None):
    """The plain (non-sequence) elements of every macro's first item in one functional group
    item, e.g. PixelSpacing out of PixelMeasuresSequence."""
    if group is None:
        return
    for macro in group:
        if macro.VR != "SQ" or not macro.value:
            continue
        for element in macro.value[0]:
            if element.VR != "SQ":
                yield element


def _item(ds: Dataset, keyword: str, index: int) -> Dataset | None:
    sequence = ds.get(keyword)
    try:
        return sequence[index] if sequence is not None else None
    except IndexError:
        return None


def frame_headers(ds: Dataset, frames: int) -> list[Dataset]:
    """One header per frame: the top-level elements that are not sequences or pixels, then
    the shared functional groups', then the frame's own (each overriding the one before).

    Args:
        ds: an enhanced multi-frame dataset (:func:`is_enhanced`).
        frames: its NumberOfFrames.

    Returns:
        ``frames`` datasets, in the order the frames are stored.
    """
    top = Dataset()
    for element in ds:
        if element.VR != "SQ" and element.keyword != "PixelData":
            top.add(element)
    shared = _item(ds, _SHARED, 0)
    headers = []
    for frame in range(frames):
        header = Dataset()
        header.update(top)
        for element in _macro_elements(shared):
            header[element.tag] = element
        for element in _macro_elements(_item(ds, _PER_FRAME, frame)):
            header[element.tag] = element
        headers.append(header)
    return headers
