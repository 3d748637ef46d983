"""ZIP uploads: a study exported from a PACS (DICOM files without extensions, a DICOMDIR,
folders) or a folder of slices, unpacked in memory and read as if uploaded file by file."""

from __future__ import annotations

import io

import numpy as np
import pytest

from brainloc import scans
from brainloc.scans import ScanError, read_uploads
from tests.brainloc.scan_factory import (
    encode_dicom,
    encode_pil,
    encode_tiff,
    encode_zip,
    synthetic_slice,
)


def _series(count: int = 4, uid: str = "1.2.826.0.1.3680043.8.498.7") -> list[bytes]:
    frames = [
        (synthetic_slice((64, 64), seed=k)[..., 1].astype(np.uint16) * 16) for k in range(count)
    ]
    return [
        encode_dicom(frame, position_z=5.0 * k, instance=k + 1, series_uid=uid)
        for k, frame in enumerate(frames)
    ]


def _no_pixels_dicom() -> bytes:
    from pydicom import dcmread

    dataset = dcmread(io.BytesIO(_series(1)[0]))
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def test_a_pacs_export_reads_like_its_files_uploaded_one_by_one():
    series = _series()
    # PACS names: folders, no extensions, shuffled order, a DICOMDIR and a report beside them.
    members = {f"DICOM/ST0/SE0/IM{k:04d}": data for k, data in reversed(list(enumerate(series)))}
    members |= {"DICOMDIR": b"\0" * 128 + b"DICM" + b"\0" * 64, "README.TXT": b"exported"}
    members["DICOM/ST0/SE9/SR0001"] = _no_pixels_dicom()
    (from_zip,) = read_uploads([("study.zip", encode_zip(members))])
    (one_by_one,) = read_uploads([(f"im{k}.dcm", data) for k, data in enumerate(series)])
    np.testing.assert_array_equal(from_zip.slices, one_by_one.slices)
    assert from_zip.source_format == "dicom" and from_zip.n_slices == 4
    assert from_zip.positions_mm == one_by_one.positions_mm
    assert from_zip.names == ("IM0000", "IM0001", "IM0002", "IM0003")
    assert any(
        "study.zip: 4 image file(s) read; 3 other file(s) in the archive skipped" in note
        for note in from_zip.notes
    )


def test_numbered_slices_in_a_zip_folder_still_form_one_volume():
    members = {
        f"kaggle/CASE_A/CASE_A_{n}.tif": encode_tiff(synthetic_slice((64, 64), seed=n))
        for n in (3, 1, 2)
    }
    members["__MACOSX/kaggle/._CASE_A_1.tif"] = b"resource fork"
    (volume,) = read_uploads([("case.zip", encode_zip(members))])
    assert volume.names == ("CASE_A_1.tif", "CASE_A_2.tif", "CASE_A_3.tif")
    np.testing.assert_array_equal(volume.slices[0], synthetic_slice((64, 64), seed=1))
    # macOS' resource folder is not a file of the export: nothing is said about it.
    assert not any("skipped" in note for note in volume.notes)


def test_a_zip_beside_ordinary_files_is_read_with_them():
    image = synthetic_slice((64, 64), seed=9)
    read = read_uploads(
        [("a.png", _png(image)), ("more.zip", encode_zip({"b.tif": encode_tiff(image)}))]
    )
    assert [scan.names for scan in read] == [("a.png",), ("b.tif",)]


def _png(image: np.ndarray) -> bytes:
    from tests.brainloc.scan_factory import encode_pil

    return encode_pil(image, "PNG")


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (
            encode_zip({"notes.txt": b"hello", "inner.zip": b"PK\x03\x04"}),
            "the ZIP archive holds no image",
        ),
        (b"PK\x03\x04" + b"\0" * 40, "the ZIP archive is damaged"),
    ],
)
def test_unusable_archives_are_refused_by_name(archive, message):
    with pytest.raises(ScanError, match=f"^study.zip: {message}"):
        read_uploads([("study.zip", archive)])


def test_archive_limits_guard_against_zip_bombs(monkeypatch):
    members = {f"s{k}.tif": encode_tiff(synthetic_slice((64, 64), seed=k)) for k in range(3)}
    monkeypatch.setattr(scans, "MAX_ARCHIVE_MEMBERS", 2)
    with pytest.raises(ScanError, match="holds 3 files; at most 2 are accepted"):
        read_uploads([("many.zip", encode_zip(members))])
    monkeypatch.setattr(scans, "MAX_ARCHIVE_MEMBERS", 10)
    # Ten megabytes of zeros pack into a few kilobytes: the unpacked size is what counts.
    bomb = encode_zip({"zeros.tif": b"\0" * (10 * 1024 * 1024)})
    assert len(bomb) < 100_000
    monkeypatch.setenv("BRAINLOC_MAX_ARCHIVE_MB", "1")
    with pytest.raises(ScanError, match="unpacks to more than 1 MB"):
        read_uploads([("bomb.zip", bomb)])
    # The limit holds for all the archives of one upload together, not for each: four 1 MB
    # ZIPs that unpacked to 1 GB each held 8 GB at once.
    slice_tif = encode_tiff(synthetic_slice((64, 64)))
    half = encode_zip({"s.tif": slice_tif, "zeros.dat": b"\0" * (600 * 1024)})
    with pytest.raises(
        ScanError, match="^b.zip: the upload's ZIP archives unpack to more than 1 MB"
    ):
        read_uploads([("a.zip", half), ("b.zip", half)])


def test_the_unpacked_archive_limit_is_the_deployments_setting(monkeypatch):
    """BRAINLOC_MAX_ARCHIVE_MB: a small server lowers it (a ZIP at the default 1 GB took 2.1 GB
    of memory); the refusal names the limit set."""
    slice_tif = encode_tiff(synthetic_slice((64, 64)))
    # Unpacked, the slice and the padding beside it hold exactly 2 MB; one byte more is over.
    padding = 2 * 1024 * 1024 - len(slice_tif)
    at_limit = encode_zip({"s.tif": slice_tif, "pad.dat": b"\0" * padding})
    over = encode_zip({"s.tif": slice_tif, "pad.dat": b"\0" * (padding + 1)})
    monkeypatch.setenv("BRAINLOC_MAX_ARCHIVE_MB", "2")
    (scan,) = read_uploads([("study.zip", at_limit)])
    assert scan.names == ("s.tif",)
    with pytest.raises(
        ScanError,
        match=r"^study.zip: the ZIP archive unpacks to more than 2 MB; upload fewer files at "
        r"once or ask your administrator \(BRAINLOC_MAX_ARCHIVE_MB\)$",
    ):
        read_uploads([("study.zip", over)])


def test_a_password_protected_archive_says_so():
    archive = bytearray(encode_zip({"a.tif": encode_tiff(synthetic_slice((64, 64)))}))
    # Set the "encrypted" flag in the local header and in the central directory entry.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = archive.find(signature)
        archive[start + offset] |= 0x1
    with pytest.raises(ScanError, match="password-protected; unpack it"):
        read_uploads([("locked.zip", bytes(archive))])


@pytest.mark.parametrize(
    "names", [["IM0001", "IM0002", "IM0003"], ["1.2.840.7.1", "1.2.840.7.2", "1.2.840.7.3"]]
)
def test_dicom_without_preamble_named_like_a_pacs_export_forms_one_series(names):
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    files = [
        (name, encode_dicom(pixels + 10 * k, position_z=5.0 * k, instance=k + 1, preamble=False))
        for k, name in enumerate(names)
    ]
    for upload in (files, [("study.zip", encode_zip(dict(files)))]):
        scans = read_uploads(upload)
        assert [scan.n_slices for scan in scans] == [3]
        assert scans[0].slice_thickness_mm == 5.0


def test_an_upload_of_many_small_files_that_decode_large_is_refused(monkeypatch):
    """Each file is within its own limits, but together they decode to more than one upload
    may hold (a 22 KB PNG can be a 4096 x 4096 image): reading stops with a message."""
    png = encode_pil(synthetic_slice((64, 64)), "PNG")
    series = _series(4)
    files = [(f"s{k}.png", png) for k in range(4)]
    assert len(read_uploads(files)) == 4
    monkeypatch.setenv("BRAINLOC_MAX_UPLOAD_PIXELS", str(3 * 64 * 64 - 1))
    for upload in (
        files,
        [("slices.zip", encode_zip(dict(files)))],
        [(f"IM{k}", data) for k, data in enumerate(series)],
        [files[0], *[(f"IM{k}", data) for k, data in enumerate(series[:2])]],
    ):
        with pytest.raises(ScanError, match="more than 12,287 pixels together"):
            read_uploads(upload)


def test_the_upload_pixel_limit_is_the_deployments_setting(monkeypatch):
    """BRAINLOC_MAX_UPLOAD_PIXELS: an upload of exactly the limit is read, one pixel more is
    refused with a message that names the limit set."""
    png = encode_pil(synthetic_slice((64, 64)), "PNG")
    files = [(f"s{k}.png", png) for k in range(3)]
    monkeypatch.setenv("BRAINLOC_MAX_UPLOAD_PIXELS", str(3 * 64 * 64))
    assert len(read_uploads(files)) == 3
    monkeypatch.setenv("BRAINLOC_MAX_UPLOAD_PIXELS", str(3 * 64 * 64 - 1))
    with pytest.raises(
        ScanError,
        match=r"^the upload's images hold more than 12,287 pixels together, more than this "
        r"server reads at once; upload fewer files at once or ask your administrator "
        r"\(BRAINLOC_MAX_UPLOAD_PIXELS\)$",
    ):
        read_uploads(files)


def test_a_kaggle_case_folder_with_its_masks_reads_the_scans_only():
    # The case folder as the dataset ships it, zipped or chosen file by file: every
    # <case>_<n>.tif with its <case>_<n>_mask.tif (empty or not) beside it.
    slices = {n: synthetic_slice((64, 64), seed=n) for n in (1, 2, 3)}
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 20:30] = 255
    files = {}
    for n, image in slices.items():
        files[f"CASE_A/CASE_A_{n}.tif"] = encode_tiff(image)
        files[f"CASE_A/CASE_A_{n}_mask.tif"] = encode_tiff(mask if n == 2 else mask * 0)
    for upload in (
        [("CASE_A.zip", encode_zip(files))],
        [(name.rsplit("/", 1)[1], data) for name, data in files.items()],
    ):
        (volume,) = read_uploads(upload)
        assert volume.names == ("CASE_A_1.tif", "CASE_A_2.tif", "CASE_A_3.tif")
        assert any("3 tumor mask file(s)" in note for note in volume.notes)
    # A mask without its scan is still refused as what it is.
    with pytest.raises(ScanError, match="binary mask"):
        read_uploads([("CASE_A_2_mask.tif", files["CASE_A/CASE_A_2_mask.tif"])])
