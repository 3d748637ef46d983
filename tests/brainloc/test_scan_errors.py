"""Bad input: a corpus of broken files built here, each refused with its own message.

Plus property-based tests: random bytes, and valid files with random damage,
never make the reader raise anything but ScanError.
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainloc.scans import ScanError, read_scan, read_scan_path, read_uploads
from tests.brainloc.scan_factory import (
    encode_dicom,
    encode_nifti,
    encode_pil,
    encode_tiff,
    synthetic_slice,
    volume_xyz,
)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size in its header (a decompression bomb's signature)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 64)
    idat_chunk = b"IDAT" + idat
    body += struct.pack(">I", len(idat)) + idat_chunk + struct.pack(">I", zlib.crc32(idat_chunk))
    return b"\x89PNG\r\n\x1a\n" + body


def _corpus():
    image = synthetic_slice((64, 64))
    png = encode_pil(image, "PNG")
    jpeg = encode_pil(image, "JPEG")
    tiff = encode_tiff(image)
    dicom = encode_dicom(image[..., 1].astype(np.uint16))
    nifti = encode_nifti(volume_xyz(3, 64))
    rows, cols = np.mgrid[0:64, 0:64]
    mask = (((rows - 30) ** 2 + (cols - 25) ** 2) < 150).astype(np.uint8) * 255
    no_pixels = encode_dicom(image[..., 1].astype(np.uint16))
    yield "empty", b"", "scan.png", "empty"
    yield "text", b"patient notes: nothing to see\n" * 20, "scan.png", "text file"
    yield "random binary", bytes(range(256)) * 4, "scan.tif", "not a valid TIFF"
    yield "unknown name", b"\x00\x01\x02\x03" * 100, "scan", "not an image"
    yield "gif", b"GIF89a" + b"\x00" * 100, "scan.gif", "GIF"
    yield "truncated png", png[: len(png) // 2], "scan.png", "truncated or corrupt"
    yield "truncated jpeg", jpeg[: len(jpeg) // 3], "scan.jpg", "truncated or corrupt"
    yield "truncated tiff", tiff[:300], "scan.tif", "truncated or corrupt"
    yield "truncated dicom", dicom[: len(dicom) // 2], "scan.dcm", "truncated or corrupt"
    yield "truncated nifti", nifti[:2000], "scan.nii", "truncated or corrupt"
    yield "png named jpg", png, "scan.jpg", "extension does not match"
    yield "tiff named png", tiff, "scan.png", "extension does not match"
    yield "png named txt", png, "scan.txt", "rename it"
    yield "gzip not nifti", zlib.compress(b"x"), "scan.gz", "not an image"
    yield "nifti gz of text", __import__("gzip").compress(b"hello" * 100), "a.nii.gz", "not a NIfTI"
    yield "gzip named png", __import__("gzip").compress(png), "scan.png", "gzip"
    yield "bomb png", _png_header_only(60000, 60000), "bomb.png", "too large"
    yield "huge png", encode_pil(np.zeros((4100, 4200), np.uint8), "PNG"), "huge.png", "too large"
    yield "tiny png", encode_pil(image[:8, :8], "PNG"), "tiny.png", "at least"
    yield "tiny dicom", encode_dicom(np.ones((4, 4), np.uint16)), "tiny.dcm", "at least"
    yield (
        "complex",
        encode_tiff(np.ones((64, 64), np.complex64)),
        "cx.tif",
        "unsupported pixel type",
    )
    yield "1-bit png", _png_1bit(mask), "mask.png", "mask"
    yield "mask png", encode_pil(mask, "PNG"), "scan_12.png", "binary mask"
    yield "mask 0/1", encode_pil((mask > 0).astype(np.uint8), "PNG"), "seg.png", "binary mask"
    yield "mask jpeg", encode_pil(mask, "JPEG"), "scan.jpg", "binary mask"
    yield "mask tiff", encode_tiff(mask), "scan_3_mask.tif", "binary mask"
    yield (
        "empty mask",
        encode_tiff(np.zeros((64, 64), np.uint8)),
        "x_1_mask.tif",
        "empty tumor mask",
    )
    yield "blank", encode_pil(np.full((64, 64, 3), 40, np.uint8), "PNG"), "blank.png", "blank"
    yield "dicom no image", _strip_pixels(no_pixels), "sr.dcm", "holds no image"
    yield "nifti 4d", encode_nifti(np.ones((32, 32, 3, 2), np.int16)), "fmri.nii", "one 3-D volume"
    yield "nifti rgb", encode_nifti(np.ones((32, 32, 3), np.complex64)), "c.nii", "voxel type"


def _png_1bit(mask: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask > 0).convert("1").save(buffer, "PNG")
    return buffer.getvalue()


def _strip_pixels(data: bytes) -> bytes:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


CORPUS = list(_corpus())


@pytest.mark.parametrize(
    ("data", "filename", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
def test_bad_file_gets_a_specific_message(data, filename, expected):
    with pytest.raises(ScanError) as caught:
        read_scan(data, filename)
    message = str(caught.value)
    assert message.startswith(filename), message
    if expected is not None:
        assert expected.lower() in message.lower(), message
    assert "Traceback" not in message


def test_five_channel_tiff_names_the_channel_count():
    with pytest.raises(ScanError, match="5 channels"):
        buffer = io.BytesIO()
        pixels = np.zeros((64, 64, 5), np.uint8) + 7
        tifffile.imwrite(buffer, pixels, photometric="rgb", extrasamples=["unspecified"] * 2)
        read_scan(buffer.getvalue(), "c.tif")


def test_a_tiff_of_many_samples_is_refused_before_its_pixels_are_decoded(monkeypatch):
    """A TIFF may declare thousands of samples per pixel: four zlib pages of 4096 x 4096 x 64
    zeros (4 MB) decoded to 8 GB before the channel count was refused."""
    buffer = io.BytesIO()
    pixels = np.zeros((64, 64, 64), np.uint8)
    tifffile.imwrite(
        buffer, pixels, photometric="minisblack", planarconfig="contig", compression="zlib"
    )
    decoded = []
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda *args, **kwargs: decoded.append(1))
    with pytest.raises(ScanError, match="^s.tif: the image has 64 channels; supported are 1"):
        read_scan(buffer.getvalue(), "s.tif")
    assert not decoded


def test_a_tiff_whose_samples_decode_too_large_is_refused_from_its_header(monkeypatch):
    """Pixels are counted, but a float64 sample is eight bytes: four zlib pages of 4096 x 4096
    RGBA float64 zeros (2 MB) took 5.8 GB to read. Their decoded size is checked first."""
    buffer = io.BytesIO()
    zeros = np.zeros((3, 256, 256), np.float64)
    tifffile.imwrite(buffer, zeros, photometric="minisblack", compression="zlib")
    decoded = []
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda *args, **kwargs: decoded.append(1))
    monkeypatch.setenv("BRAINLOC_MAX_DECODED_MB", "1")
    with pytest.raises(
        ScanError, match=r"^f.tif: 3 slice\(s\) of 256 x 256 pixels, 1 channel\(s\) of "
    ):
        read_scan(buffer.getvalue(), "f.tif")
    assert not decoded


def test_the_decoded_size_limit_is_the_deployments_setting(monkeypatch):
    """BRAINLOC_MAX_DECODED_MB (the largest TIFF accepted by default took 2.2 GB of memory): a
    TIFF of exactly the limit decoded is read, a larger one refused naming the limit, and a
    .nii.gz that decompresses to more is refused too."""
    import gzip

    rng = np.random.default_rng(0)
    volume = rng.uniform(0.0, 1000.0, (3, 256, 256))  # float64: 0.5 MB a slice
    at_limit, over = io.BytesIO(), io.BytesIO()
    tifffile.imwrite(at_limit, volume[:2], photometric="minisblack")
    tifffile.imwrite(over, volume, photometric="minisblack")
    monkeypatch.setenv("BRAINLOC_MAX_DECODED_MB", "1")
    assert read_scan(at_limit.getvalue(), "v.tif").n_slices == 2
    with pytest.raises(
        ScanError,
        match=r"^v.tif: 3 slice\(s\) of 256 x 256 pixels, 1 channel\(s\) of 64-bit samples, "
        r"take 1.5 MB decoded: too large to analyse \(at most 1 MB; ask your administrator "
        r"about BRAINLOC_MAX_DECODED_MB\)$",
    ):
        read_scan(over.getvalue(), "v.tif")
    nifti = gzip.compress(b"\0" * (1024 * 1024 + 1))
    with pytest.raises(ScanError, match=r"^v.nii.gz: the file decompresses to more than 1 MB"):
        read_scan(nifti, "v.nii.gz")


def test_missing_path_is_a_scan_error(tmp_path):
    with pytest.raises(ScanError, match="cannot open"):
        read_scan_path(tmp_path / "nope.png")


def test_series_with_mismatched_sizes_is_refused():
    files = [
        ("a.dcm", encode_dicom(synthetic_slice((64, 64))[..., 1].astype(np.uint16), position_z=0)),
        ("b.dcm", encode_dicom(synthetic_slice((64, 80))[..., 1].astype(np.uint16), position_z=1)),
    ]
    with pytest.raises(ScanError, match="all slices of a series must match"):
        read_uploads(files)


def _grey_dicom(z: float) -> bytes:
    return encode_dicom(synthetic_slice((64, 64))[..., 1].astype(np.uint16), position_z=z)


def _damaged_spacing(data: bytes) -> bytes:
    """The file with PixelSpacing's value representation garbled ("DS" -> "D$"), which
    pydicom reports only when the value is read."""
    tag = b"\x28\x00\x30\x00DS"
    at = data.index(tag)
    return data[: at + 4] + b"D$" + data[at + 6 :]


@pytest.mark.parametrize("count", [1, 2])
def test_a_damaged_dicom_among_uploads_is_named_not_raised(count):
    files = [("a.dcm", _damaged_spacing(_grey_dicom(0)))] + [
        ("b.dcm", _grey_dicom(5)) for _ in range(count - 1)
    ]
    with pytest.raises(ScanError, match=r"a\.dcm.*truncated or corrupt"):
        read_uploads(files)


def test_a_colour_slice_in_a_grey_series_is_refused_with_both_named():
    import pydicom

    colour = pydicom.dcmread(io.BytesIO(_grey_dicom(5)))
    colour.SamplesPerPixel, colour.PhotometricInterpretation = 3, "RGB"
    colour.PlanarConfiguration = 0
    colour.BitsAllocated, colour.BitsStored, colour.HighBit = 8, 8, 7
    colour.PixelData = synthetic_slice((64, 64)).tobytes()
    buffer = io.BytesIO()
    colour.save_as(buffer, enforce_file_format=True)
    files = [("IM1.dcm", _grey_dicom(0)), ("IM2.dcm", buffer.getvalue())]
    with pytest.raises(ScanError, match=r"IM2\.dcm: .*colour \(RGB\).*IM1\.dcm is grey"):
        read_uploads(files)


def test_no_uploads_is_a_scan_error():
    with pytest.raises(ScanError, match="no files"):
        read_uploads([])


_NAMES = st.sampled_from(["a.png", "a.jpg", "a.tif", "a.dcm", "a.nii", "a.nii.gz", "a", "a.bin"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), filename=_NAMES)
def test_random_bytes_only_ever_raise_scan_error(data, filename):
    with contextlib.suppress(ScanError):
        read_scan(data, filename)


def _valid_files():
    image = synthetic_slice((64, 64))
    return [
        (encode_pil(image, "PNG"), "a.png"),
        (encode_pil(image, "JPEG"), "a.jpg"),
        (encode_tiff(image), "a.tif"),
        (encode_dicom(image[..., 1].astype(np.uint16)), "a.dcm"),
        (encode_nifti(volume_xyz(2, 64)), "a.nii"),
    ]


VALID = _valid_files()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(VALID) - 1),
    damage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_damaged_valid_files_only_ever_raise_scan_error(which, damage, cut):
    data, filename = VALID[which]
    data = bytearray(data)
    for offset, value in damage:
        data[offset % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        scan = read_scan(bytes(data), filename)
    except ScanError:
        return
    assert scan.slices.dtype == np.uint8 and scan.slices.ndim == 4 and scan.slices.shape[-1] == 3


def _compressed_dicom(syntax: str, fragment: bytes) -> bytes:
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(
        io.BytesIO(encode_dicom(synthetic_slice((64, 64))[..., 1].astype(np.uint16)))
    )
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_unsupported_dicom_compression_is_named():
    # JPEG-LS: no decoder for it is installed here.
    data = _compressed_dicom("1.2.840.10008.1.2.4.80", b"\xff\xd8" + b"\x00" * 64)
    with pytest.raises(ScanError, match="JPEG-LS.*cannot be decoded here; export"):
        read_scan(data, "ls.dcm")


def test_deflated_dicom_is_refused_before_it_is_inflated():
    """pydicom inflates a deflated file whole and without a limit before its header can be
    checked (a 4 MB file held 4 GB of zeros): such a file is named, not read."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(
        io.BytesIO(encode_dicom(synthetic_slice((64, 64))[..., 1].astype(np.uint16)))
    )
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert pydicom.dcmread(io.BytesIO(data)).pixel_array.shape == (64, 64)
    message = "Deflated Explicit VR Little Endian' cannot be read here; export"
    with pytest.raises(ScanError, match=f"^deflated.dcm: DICOM compression '{message}"):
        read_scan(data, "deflated.dcm")
    with pytest.raises(ScanError, match=message):
        read_uploads([("IM1", data), ("IM2", encode_dicom(synthetic_slice((64, 64))[..., 1]))])


def test_broken_compressed_dicom_is_corrupt():
    data = _compressed_dicom("1.2.840.10008.1.2.4.90", b"\xff\x4f\xff\x51" + b"\x00" * 100)
    with pytest.raises(ScanError, match="truncated or corrupt"):
        read_scan(data, "j2k.dcm")


def test_size_limits_follow_the_deployment_settings(monkeypatch):
    """BRAINLOC_MAX_IMAGE_PIXELS and BRAINLOC_MAX_SLICES are what every reader enforces."""
    png = encode_pil(synthetic_slice((128, 128)), "PNG")
    volume = np.stack([synthetic_slice((64, 64), seed=k) for k in range(5)])
    tiff = io.BytesIO()
    tifffile.imwrite(tiff, volume, photometric="rgb")
    assert read_scan(png, "a.png").shape == (128, 128)
    assert read_scan(tiff.getvalue(), "v.tif").n_slices == 5

    monkeypatch.setenv("BRAINLOC_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(ScanError, match="128 x 128 pixels, too large: slices over 10,000"):
        read_scan(png, "a.png")
    monkeypatch.delenv("BRAINLOC_MAX_IMAGE_PIXELS")
    monkeypatch.setenv("BRAINLOC_MAX_SLICES", "3")
    with pytest.raises(ScanError, match="at most 3 are accepted"):
        read_scan(tiff.getvalue(), "v.tif")
    series = [
        (f"s{k}.dcm", encode_dicom(volume[k, ..., 1].astype(np.uint16), position_z=k))
        for k in range(5)
    ]
    with pytest.raises(ScanError, match="5 slices; at most 3 are accepted"):
        read_uploads(series)


def test_a_tiff_of_too_many_pages_is_refused_without_reading_them_all(monkeypatch):
    """tifffile parses and keeps each page: 1.5 million pages in 170 MB took 108 s and 4.4 GB
    before the slice limit refused them. Reading stops past the limit now."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((200, 32, 32), np.uint8), metadata=None)
    parsed = []
    page_init = tifffile.TiffPage.__init__

    def counted(self, *args, **kwargs):
        parsed.append(1)
        page_init(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "__init__", counted)
    monkeypatch.setenv("BRAINLOC_MAX_SLICES", "3")
    with pytest.raises(ScanError, match="^many.tif: more than 3 slices; at most 3 are accepted"):
        read_scan(buffer.getvalue(), "many.tif")
    assert len(parsed) <= 2 * 3 + 1


def test_default_slice_limit_is_4096_squared():
    from brainloc.settings import scan_limits

    assert scan_limits({}).max_image_pixels == 4096 * 4096
    with pytest.raises(ValueError, match="BRAINLOC_MAX_SLICES must be between"):
        scan_limits({"BRAINLOC_MAX_SLICES": "0"})


def test_a_slice_of_another_pixel_spacing_in_a_series_is_refused_with_both_named():
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    files = [
        (f"IM{k}.dcm", encode_dicom(pixels, position_z=5.0 * k, spacing=spacing))
        for k, spacing in enumerate([(0.5, 0.5), (0.5, 0.5), (1.0, 1.0)])
    ]
    with pytest.raises(ScanError, match=r"IM2.dcm: a pixel spacing of 1.0 x 1.0 mm.*IM0.dcm"):
        read_uploads(files)


def test_a_line_break_in_an_upload_name_does_not_forge_a_log_line(caplog):
    # A ZIP member's name can hold a line break; logged as it is, the rest of the name would
    # read as a line of its own in the server's log.
    png = encode_pil(synthetic_slice((64, 64)), "PNG")
    name = "scan\n2026-12-07 INFO admin chief approved mallory.png"
    with (
        caplog.at_level("INFO", logger="brainloc.scans"),
        pytest.raises(ScanError, match="truncated or corrupt"),
    ):
        read_scan(png[: len(png) // 2], name)
    (record,) = [r for r in caplog.records if r.name == "brainloc.scans"]
    assert "unreadable upload" in record.getMessage()
    assert "\n" not in record.getMessage() and "\\n2026-12-07" in record.getMessage()
