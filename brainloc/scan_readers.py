"""Decoders for TIFF, PNG/JPEG and NIfTI bytes (DICOM lives in :mod:`brainloc.scan_dicom`).

Each reader takes the file's bytes and its name, checks the declared size
before decoding any pixel, and returns :func:`brainloc.scan_normalize.build_scan`'s
:class:`~brainloc.scans.Scan`. Errors are :class:`~brainloc.scans.ScanError`;
:func:`brainloc.scans.read_scan` turns anything unexpected into one.
"""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from brainloc.scan_dicom import looks_like_raw_dicom, read_dicom, read_dicom_series
from brainloc.scan_normalize import build_scan, check_dimensions
from brainloc.scans import ScanError, SeriesHeader
from brainloc.settings import scan_limits

__all__ = ["READERS", "gunzip_capped", "looks_like_raw_dicom", "read_dicom_series"]


def gunzip_capped(data: bytes, label: str, limit: int) -> bytes:
    """Decompress gzip data, refusing output larger than ``limit`` bytes (gzip bombs)."""
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
                if out.tell() > limit:
                    raise ScanError(
                        f"{label}: the file decompresses to more than {limit // 2**20} MB; "
                        "it is too large to analyse"
                    )
    except (OSError, EOFError) as exc:
        raise ScanError(f"{label}: the compressed file is truncated or corrupt") from exc
    return out.getvalue()


def _unsupported_codec(label: str, page, exc: Exception) -> ScanError:
    compression = getattr(getattr(page, "compression", None), "name", "unknown")
    return ScanError(
        f"{label}: the TIFF uses {compression} compression, which cannot be decoded here "
        f"({exc}); save it uncompressed"
    )


def read_tiff(data: bytes, label: str):
    """Read a TIFF; several pages of the same size make a case.

    Each page is shown as its Orientation tag says (turned or mirrored, as a JPEG by its EXIF
    orientation and a TIFF decoded by Pillow are), and the sizes compared are those shown.
    """
    import tifffile

    max_slices = scan_limits().max_slices
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        pages = []
        # Pages are parsed and kept one by one: stop at the first beyond what a case may hold
        # (with a thumbnail beside each slice at most), not after a million of them.
        for count, page in enumerate(tif.pages, start=1):
            if not getattr(page, "is_reduced", False):
                pages.append(page)
            if len(pages) > max_slices or count > 2 * max_slices:
                raise ScanError(
                    f"{label}: more than {max_slices} slices; at most {max_slices} are accepted"
                )
        if not pages:
            raise ScanError(f"{label}: the TIFF holds no image")
        first = pages[0]
        for page in pages:
            if getattr(page, "imagedepth", 1) > 1:
                raise ScanError(f"{label}: volumetric TIFF tiles are not supported")
            height, width = _shown_size(page)
            sample_bytes = -(-page.bitspersample // 8)
            check_dimensions(label, height, width, len(pages), page.samplesperpixel, sample_bytes)
            if (height, width, page.samplesperpixel) != (
                *_shown_size(first),
                first.samplesperpixel,
            ):
                raise ScanError(
                    f"{label}: the pages of this TIFF have different sizes; "
                    "a multi-page TIFF must hold slices of one size"
                )
        arrays = []
        for page in pages:
            try:
                array = page.asarray()
            except ValueError as exc:
                if "imagecodecs" in str(exc) or "codec" in str(exc).lower():
                    # tifffile needs the optional imagecodecs package for LZW and JPEG;
                    # Pillow decodes those, so let it try before giving up.
                    return _read_tiff_with_pil(data, label, _unsupported_codec(label, page, exc))
                raise
            arrays.append(tiff_page_pixels(page, array))
    return _tiff_scan(arrays, label)


def tiff_page_pixels(page, array: np.ndarray | None = None) -> np.ndarray:
    """One ``tifffile`` page's pixels as they are meant to be seen: samples last, a palette
    looked up, min-is-white inverted, and turned or mirrored by its Orientation tag.

    ``array`` is the page already decoded (``page.asarray()``), else it is decoded here. The
    uploads above and ``training.data`` (the slices and masks models train and are evaluated
    on) both read TIFF pages through this one definition.
    """
    if array is None:
        array = page.asarray()
    if page.axes.startswith("S") and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    return _tiff_oriented(page, _tiff_photometric(page, array))


#: A TIFF page's Orientation (tag 274, the value EXIF borrowed) undone on its (H, W[, C])
#: pixels: the flips and quarter turns that Pillow's ImageOps.exif_transpose makes. Written
#: here because that works on Pillow images only, which cannot hold 16-bit or float pages
#: with several samples; tifffile returns the pixels as stored.
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],  # top right: mirrored left to right
    3: lambda a: a[::-1, ::-1],  # bottom right: turned 180 degrees
    4: lambda a: a[::-1],  # bottom left: mirrored top to bottom
    5: lambda a: a.swapaxes(0, 1),  # left top: transposed
    6: lambda a: np.rot90(a, -1),  # right top: turned 90 degrees clockwise
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # right bottom: transposed the other way
    8: lambda a: np.rot90(a, 1),  # left bottom: turned 90 degrees counterclockwise
}


def _orientation(page) -> int:
    """The page's Orientation tag, 1 (as stored) when absent or not a valid value."""
    tag = page.tags.get(274)
    try:
        value = int(tag.value) if tag is not None else 1
    except (TypeError, ValueError):
        return 1
    return value if value in _ORIENTATIONS else 1


def _shown_size(page) -> tuple[int, int]:
    """(height, width) of the page as shown: its stored size, swapped for a quarter turn."""
    if _orientation(page) >= 5:
        return page.imagewidth, page.imagelength
    return page.imagelength, page.imagewidth


def _tiff_oriented(page, array: np.ndarray) -> np.ndarray:
    """The page's pixels as they are meant to be seen, by its Orientation tag."""
    turn = _ORIENTATIONS.get(_orientation(page))
    return array if turn is None else np.ascontiguousarray(turn(array))


def _tiff_photometric(page, array: np.ndarray) -> np.ndarray:
    """Pixels as they are meant to be seen: tifffile returns a palette image's indices and a
    min-is-white image's stored values, as Pillow does not."""
    from tifffile import PHOTOMETRIC

    if page.photometric == PHOTOMETRIC.PALETTE and page.colormap is not None and array.ndim == 2:
        # The colour map is (3, 2**bits) 16-bit red, green and blue; a grey one gives three
        # equal channels, read as one sequence. An 8-bit image's colours are the entries'
        # high bytes (an 8-bit colour is stored times 257), as Pillow reads them: looked up
        # as 16-bit, the image was rescaled as 16-bit data, unlike the same image plainly.
        colormap = page.colormap
        if page.bitspersample <= 8:
            colormap = (colormap // 256).astype(np.uint8)
        return np.moveaxis(colormap[:, array], 0, -1)
    if page.photometric == PHOTOMETRIC.MINISWHITE:
        if array.dtype.kind == "u":
            return (2**page.bitspersample - 1) - array
        return -array.astype(np.float32) if array.dtype.kind == "f" else ~array
    return array


def _tiff_scan(arrays: list[np.ndarray], label: str):
    volume = np.stack(arrays)
    names = (
        (label,)
        if len(arrays) == 1
        else tuple(f"{label} [page {k + 1}]" for k in range(len(arrays)))
    )
    return build_scan(volume, label=label, source_format="tiff", names=names)


def _open_pil(data: bytes, label: str, pil_format: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=[pil_format])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ScanError(f"{label}: the image is far too large (decompression bomb)") from exc


def _pil_array(image: Image.Image, label: str, n_frames: int = 1) -> np.ndarray:
    """Check the size and mode of the current frame, decode it and return its pixels."""
    width, height = image.size
    check_dimensions(label, height, width, n_frames)
    if image.mode == "1":
        raise ScanError(
            f"{label}: this is a binary (1-bit) image, i.e. a mask, not an MRI scan; "
            "upload the scan image itself"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image.load()
    # Phones and some viewers store rotation in EXIF instead of the pixels.
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        image = image.convert("RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    return np.asarray(image)


def _read_pil(data: bytes, label: str, pil_format: str, source_format: str):
    array = _pil_array(_open_pil(data, label, pil_format), label)
    return build_scan(array[np.newaxis], label=label, source_format=source_format)


def _read_tiff_with_pil(data: bytes, label: str, unsupported: ScanError):
    """Decode a TIFF with Pillow (LZW, JPEG); raise ``unsupported`` if Pillow cannot either."""
    try:
        image = _open_pil(data, label, "TIFF")
        n_frames = getattr(image, "n_frames", 1)
        arrays = []
        for index in range(n_frames):
            image.seek(index)
            arrays.append(_pil_array(image, label, n_frames))
    except ScanError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for odd TIFFs
        raise unsupported from exc
    if any(array.shape != arrays[0].shape for array in arrays):
        raise ScanError(
            f"{label}: the pages of this TIFF have different sizes; "
            "a multi-page TIFF must hold slices of one size"
        )
    return _tiff_scan(arrays, label)


def read_png(data: bytes, label: str):
    return _read_pil(data, label, "PNG", "png")


def read_jpeg(data: bytes, label: str):
    return _read_pil(data, label, "JPEG", "jpeg")


def read_nifti(data: bytes, label: str):
    """Read a NIfTI-1/2 volume as its axial slices, displayed in radiological view.

    The volume is reoriented to RAS+; each axial slice is shown with anterior at
    the top and the patient's right on the image's left (radiological
    convention), ordered from inferior to superior.
    """
    import nibabel as nib

    nifti2 = data[4:8] in (b"n+2\x00", b"ni2\x00")
    if data[344:348] == b"ni1\x00" or data[4:8] == b"ni2\x00":
        raise ScanError(f"{label}: this is a NIfTI header without its image (.hdr/.img pair)")
    image = (nib.Nifti2Image if nifti2 else nib.Nifti1Image).from_bytes(data)
    # nibabel replaces a voxel size of 0 by 1 mm; without an sform or qform that 1 mm is made
    # up, so such a file's geometry is unknown (measurements in px, no positions).
    raw = (nib.Nifti2Header if nifti2 else nib.Nifti1Header).from_fileobj(
        io.BytesIO(data), check=False
    )
    no_size = not all(np.asarray(raw["pixdim"][1:4], dtype=float) > 0)
    made_up = no_size and int(raw["sform_code"]) == 0 and int(raw["qform_code"]) == 0
    shape = tuple(int(n) for n in image.header.get_data_shape())
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise ScanError(
            f"{label}: the NIfTI image has shape {shape}; only one 3-D volume (or a 2-D slice) "
            "is supported"
        )
    # The slices shown are the axial ones of the volume reoriented below, whichever axis the
    # file stores them along: check their size, not that of the stored axes.
    axes = list(nib.io_orientation(image.affine)[:, 0])
    shown = [shape[axes.index(axis)] for axis in range(3)] if sorted(axes) == [0, 1, 2] else shape
    check_dimensions(label, shown[1], shown[0], shown[2])
    dtype = image.header.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "uifb":
        raise ScanError(f"{label}: unsupported NIfTI voxel type {dtype}")
    if len(image.shape) != 3:
        # A single 2-D slice (or a 4-D file with one volume): give it a z axis so the
        # reorientation below sees an ordinary volume.
        zooms = (tuple(float(z) for z in image.header.get_zooms()) + (1.0, 1.0, 1.0))[:3]
        image = nib.Nifti1Image(np.asanyarray(image.dataobj).reshape(shape), image.affine)
        image.header.set_zooms(zooms)
    canonical = nib.as_closest_canonical(image)
    volume = np.asanyarray(canonical.dataobj)
    # Voxel sizes from the affine that places the voxels (the header's pixdim can disagree
    # with an sform, and nibabel sets a pixdim of 0 to 1).
    zooms = [float(z) for z in nib.affines.voxel_sizes(canonical.affine)]
    # (x: left->right, y: posterior->anterior, z) -> (z, rows: anterior->posterior,
    # columns: patient right->left).
    slices = volume[::-1, ::-1, :].transpose(2, 1, 0)
    spacing = (zooms[1], zooms[0]) if len(zooms) >= 2 else None
    thickness = zooms[2] if len(zooms) == 3 and shape[2] > 1 else None
    names = tuple(f"{label} [axial slice {k + 1}]" for k in range(slices.shape[0]))
    # Where each shown slice's first pixel lies (the voxel flipped to the top left above), and
    # in which directions its columns and rows advance: in DICOM's patient coordinates (LPS;
    # NIfTI's world is RAS), so that NIfTI and DICOM series of one examination compare.
    nx, ny, nz = volume.shape
    affine = canonical.affine
    corners = _RAS_TO_LPS @ (affine @ np.array([[nx - 1, ny - 1, k, 1] for k in range(nz)]).T)[:3]
    positions = tuple(tuple(float(v) for v in corners[:, k]) for k in range(nz))
    across, down = (_RAS_TO_LPS @ -affine[:3, axis] for axis in (0, 1))
    orientation = None
    if min(np.linalg.norm(across), np.linalg.norm(down)) > 0:
        unit = np.concatenate([across / np.linalg.norm(across), down / np.linalg.norm(down)])
        orientation = tuple(float(v) for v in unit) if np.isfinite(unit).all() else None
    notes = ["axial slices shown in radiological convention (patient right on image left)"]
    if made_up:
        spacing = thickness = positions = None
        notes.append("the file gives no voxel size, so sizes are in pixels")
    return build_scan(
        slices,
        label=label,
        source_format="nifti",
        names=names,
        spacing_mm=spacing,
        slice_thickness_mm=thickness,
        notes=tuple(notes),
        positions_mm=positions if positions and np.isfinite(positions).all() else None,
        header=SeriesHeader(plane="axial", orientation=orientation),
    )


#: NIfTI's world axes (right, anterior, superior) to DICOM's (left, posterior, superior).
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

READERS = {
    "tiff": read_tiff,
    "png": read_png,
    "jpeg": read_jpeg,
    "dicom": read_dicom,
    "nifti": read_nifti,
}
