"""Builders for small scan files of every format, made in memory for the tests.

Nothing here reads the LGG data: the images are synthetic "brains" (a
textured ellipse on a dark background) so the reader tests run anywhere.
"""

from __future__ import annotations

import gzip
import io

import numpy as np
from PIL import Image


def synthetic_slice(size: tuple[int, int] = (256, 256), seed: int = 0) -> np.ndarray:
    """A (H, W, 3) uint8 brain-like slice: textured ellipse, three different channels."""
    rng = np.random.default_rng(seed)
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    inside = ((rows - height / 2) / (0.4 * height)) ** 2 + (
        (cols - width / 2) / (0.35 * width)
    ) ** 2
    brain = inside <= 1.0
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for channel, base in enumerate((70, 110, 90)):
        texture = rng.normal(base, 25, size=(height, width))
        image[..., channel] = np.where(brain, np.clip(texture, 1, 255), 0).astype(np.uint8)
    return image


def tumor_like_slice(size=(256, 256), square=(100, 60, 48), seed=0, post_bright=True):
    """A synthetic slice with a bright square in FLAIR (and post-contrast when post_bright)."""
    image = synthetic_slice(size, seed=seed)
    top, left, side = square
    image[top : top + side, left : left + side, 1] = 240
    if post_bright:
        image[top : top + side, left : left + side, 2] = 240
    return image


def encode_pil(array: np.ndarray, pil_format: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, pil_format, **kwargs)
    return buffer.getvalue()


def encode_tiff(array: np.ndarray, **kwargs) -> bytes:
    """TIFF bytes; a (N, H, W[, 3]) array is written as N pages."""
    import tifffile

    buffer = io.BytesIO()
    if array.ndim == 4 or (array.ndim == 3 and array.shape[-1] != 3):
        with tifffile.TiffWriter(buffer) as writer:
            for page in array:
                options = {"photometric": "rgb" if page.ndim == 3 else "minisblack", **kwargs}
                writer.write(page, **options)
    else:
        options = {"photometric": "rgb" if array.ndim == 3 else "minisblack", **kwargs}
        tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def encode_dicom(
    pixels: np.ndarray,
    *,
    position_z: float = 0.0,
    instance: int = 1,
    spacing: tuple[float, float] = (0.5, 0.75),
    thickness: float = 5.0,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    photometric: str = "MONOCHROME2",
    preamble: bool = True,
    description: str | None = None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    contrast_agent: str | None = None,
    position: tuple[float, float, float] | None = None,
    study_date: str | None = None,
) -> bytes:
    """An uncompressed MR image DICOM file; a (F, H, W) array makes a multi-frame file.

    ``description`` is the SeriesDescription, ``orientation`` ImageOrientationPatient (axial
    by default), ``contrast_agent`` ContrastBolusAgent, ``position`` ImagePositionPatient
    (default ``(0, 0, position_z)``) and ``study_date`` StudyDate ("YYYYMMDD"), when given."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import MRImageStorage, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"  # explicit VR little endian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = list(orientation)
    if description is not None:
        ds.SeriesDescription = description
    if contrast_agent is not None:
        ds.ContrastBolusAgent = contrast_agent
    if study_date is not None:
        ds.StudyDate = study_date
    ds.ImagePositionPatient = list(position) if position is not None else [0, 0, position_z]
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = thickness
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data if preamble else data[132:]


def encode_enhanced_dicom(
    frames: np.ndarray,
    positions_z: list[float],
    *,
    spacing: tuple[float, float] = (0.5, 0.75),
    thickness: float = 5.0,
    slopes: list[float] | None = None,
    description: str = "AX FLAIR",
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
) -> bytes:
    """An Enhanced MR Image file of (F, H, W) stored values, as Siemens XA or Philips write
    it: PixelSpacing, SliceThickness and ImageOrientationPatient in the shared functional
    groups, each frame's ImagePositionPatient (0, 0, ``positions_z[k]``) and, with
    ``slopes``, its RescaleSlope in the per-frame groups; nothing of these at the top level."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    enhanced_mr = "1.2.840.10008.5.1.4.1.1.4.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = enhanced_mr
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = enhanced_mr
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesDescription = description
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    measures = Dataset()
    measures.PixelSpacing = list(spacing)
    measures.SliceThickness = thickness
    plane = Dataset()
    plane.ImageOrientationPatient = list(orientation)
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k, z in enumerate(positions_z):
        position = Dataset()
        position.ImagePositionPatient = [0.0, 0.0, float(z)]
        group = Dataset()
        group.PlanePositionSequence = Sequence([position])
        if slopes is not None:
            scaling = Dataset()
            scaling.RescaleSlope = slopes[k]
            scaling.RescaleIntercept = 0
            scaling.RescaleType = "US"
            group.PixelValueTransformationSequence = Sequence([scaling])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.asarray(frames).astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def encode_nifti(
    volume: np.ndarray, zooms: tuple[float, float, float] = (0.9, 0.8, 3.0), gz: bool = False
) -> bytes:
    """NIfTI-1 bytes of an (X, Y, Z) volume in RAS+ orientation."""
    import nibabel as nib

    affine = np.diag([*zooms, 1.0])
    image = nib.Nifti1Image(volume, affine)
    image.header.set_zooms((tuple(zooms) + (1.0,) * volume.ndim)[: volume.ndim])
    data = image.to_bytes()
    return gzip.compress(data) if gz else data


def volume_xyz(n_slices: int = 4, size: int = 64, dtype=np.int16) -> np.ndarray:
    """An (X, Y, Z) volume of synthetic grey slices (the FLAIR channel, scaled up)."""
    slices = [
        synthetic_slice((size, size), seed=k)[..., 1].astype(np.int32) * 10 for k in range(n_slices)
    ]
    return np.stack(slices, axis=-1).transpose(1, 0, 2).astype(dtype)


def encode_zip(members: dict[str, bytes], **options) -> bytes:
    """A ZIP archive (deflated) of ``{member name: bytes}``; ``options`` go to ZipFile."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, **options) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def encode_study(
    series: dict[str, np.ndarray], options: dict[str, dict] | None = None
) -> dict[str, bytes]:
    """A PACS-style study export: {member name: DICOM bytes} for several series.

    ``series`` maps a SeriesDescription to its (N, H, W) slices (one series each, slices
    5 mm apart along their normal from ``position``, else (0, 0, ``first_z``), z 0 unless
    given); ``options[description]`` holds those and more :func:`encode_dicom` options for it.
    Members are named like a PACS export, ``S<k>/IM<n>`` without an extension.
    """
    members = {}
    for k, (description, volume) in enumerate(series.items()):
        extra = {"description": description} | (options or {}).get(description, {})
        start = np.asarray(extra.pop("position", (0.0, 0.0, extra.pop("first_z", 0.0))))
        orientation = np.asarray(extra.get("orientation", (1, 0, 0, 0, 1, 0)), dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        for n, pixels in enumerate(volume):
            members[f"S{k:02d}/IM{n:04d}"] = encode_dicom(
                pixels,
                position=tuple(float(v) for v in start + 5.0 * n * normal),
                instance=n + 1,
                series_uid=f"1.2.826.0.1.3680043.8.498.{900 + k}",
                **extra,
            )
    return members
