"""Every supported scan format reads into the same Scan, with geometry kept."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brainloc.scans import (
    ALL_SEQUENCES,
    FLAIR_ONLY,
    ScanError,
    read_paths,
    read_scan,
    read_scan_path,
    read_uploads,
)
from tests.brainloc.scan_factory import (
    encode_dicom,
    encode_enhanced_dicom,
    encode_nifti,
    encode_pil,
    encode_tiff,
    synthetic_slice,
    volume_xyz,
)


def test_kaggle_tiff_is_read_pixel_exact(tmp_path):
    image = synthetic_slice()
    path = tmp_path / "TCGA_XX_0000_1.tif"
    path.write_bytes(encode_tiff(image))
    scan = read_scan_path(path)
    assert scan.slices.shape == (1, 256, 256, 3)
    assert scan.slices.dtype == np.uint8
    np.testing.assert_array_equal(scan.slices[0], image)
    assert scan.sequences_present == ALL_SEQUENCES
    assert scan.source_format == "tiff"
    assert scan.names == ("TCGA_XX_0000_1.tif",)
    assert scan.spacing_mm is None and scan.slice_thickness_mm is None


@pytest.mark.parametrize(
    ("pil_format", "name"), [("PNG", "a.png"), ("JPEG", "a.jpeg"), ("JPEG", "b.jpg")]
)
def test_png_and_jpeg_of_other_sizes_keep_their_size(pil_format, name):
    image = synthetic_slice((300, 200))
    scan = read_scan(
        encode_pil(image, pil_format, **({"quality": 95} if pil_format == "JPEG" else {})), name
    )
    assert scan.slices.shape == (1, 300, 200, 3)
    assert scan.sequences_present == ALL_SEQUENCES
    difference = np.abs(scan.slices[0].astype(int) - image.astype(int)).mean()
    assert difference < (0.01 if pil_format == "PNG" else 12)


def test_sixteen_bit_png_is_rescaled_keeping_order():
    grey = synthetic_slice((128, 128))[..., 1].astype(np.uint16) * 250
    scan = read_scan(encode_pil(grey, "PNG"), "deep.png")
    flair = scan.slices[0, ..., 1].astype(int)
    assert flair.max() == 255 and flair.min() == 0
    assert any("rescaled" in note for note in scan.notes)
    # Rescaling is monotonic: brighter input pixels never come out darker.
    order = np.argsort(grey.ravel(), kind="stable")
    assert np.all(np.diff(flair.ravel()[order]) >= 0)


def test_single_channel_image_is_flair_copied_to_three_channels():
    grey = synthetic_slice((96, 96))[..., 1]
    scan = read_scan(encode_pil(grey, "PNG"), "flair.png")
    assert scan.sequences_present == FLAIR_ONLY
    for channel in range(3):
        np.testing.assert_array_equal(scan.slices[0, ..., channel], grey)


def test_rgb_image_with_identical_channels_is_one_sequence():
    grey = synthetic_slice((96, 96))[..., 1]
    scan = read_scan(encode_pil(np.dstack([grey] * 3), "PNG"), "grey.png")
    assert scan.sequences_present == FLAIR_ONLY


def test_rgba_png_drops_alpha():
    image = synthetic_slice((64, 64))
    rgba = np.dstack([image, np.full((64, 64), 255, np.uint8)])
    scan = read_scan(encode_pil(rgba, "PNG"), "shot.png")
    np.testing.assert_array_equal(scan.slices[0], image)


def test_multi_page_tiff_is_a_case():
    pages = np.stack([synthetic_slice((64, 64), seed=k) for k in range(5)])
    scan = read_scan(encode_tiff(pages), "case.tiff")
    assert scan.n_slices == 5
    np.testing.assert_array_equal(scan.slices, pages)
    assert scan.names[2] == "case.tiff [page 3]"


def test_single_dicom_keeps_pixel_spacing():
    pixels = synthetic_slice((80, 96))[..., 1].astype(np.uint16) * 40
    scan = read_scan(encode_dicom(pixels, spacing=(0.5, 0.75), thickness=5.0), "IM0001.dcm")
    assert scan.source_format == "dicom"
    assert scan.slices.shape == (1, 80, 96, 3)
    assert scan.spacing_mm == (0.5, 0.75)
    assert scan.slice_thickness_mm == 5.0
    assert scan.sequences_present == FLAIR_ONLY


def test_a_zero_or_negative_spacing_counts_as_unknown_and_measures_in_pixels():
    """Malformed headers (PixelSpacing 0\\0, a NaN) must not give areas and diameters of 0 mm."""
    from brainloc.findings import slice_findings
    from brainloc.scans import Scan

    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16) * 40
    dicom = read_scan(encode_dicom(pixels, spacing=(0.0, 0.0), thickness=-1.0), "IM0001.dcm")
    assert dicom.spacing_mm is None and dicom.slice_thickness_mm is None
    other = Scan(dicom.slices, "nifti", ("v",), spacing_mm=(0.8, math.nan), slice_thickness_mm=3)
    assert other.spacing_mm is None and other.slice_thickness_mm == 3
    mask = np.zeros((64, 64), bool)
    mask[10:20, 10:30] = True
    findings = slice_findings(mask, dicom.slices[0], dicom.spacing_mm)
    assert findings.area_mm2 is None and findings.calipers.unit == "px"


def test_a_nifti_without_voxel_size_or_orientation_is_measured_in_pixels():
    """pixdim 0 and no sform/qform: nibabel would make the voxels 1 mm; the size is unknown."""
    import io as _io

    import nibabel as nib

    from tests.brainloc.scan_factory import volume_xyz

    def nifti(sform_code: int) -> bytes:
        header = nib.Nifti1Header()
        header.set_data_shape((64, 64, 3))
        header.set_data_dtype(np.float32)
        header["pixdim"][1:4] = (0.9, 0.8, 3.0)
        header.set_sform(np.diag([0.9, 0.8, 3.0, 1.0]) if sform_code else None, code=sform_code)
        header.set_qform(None, code=0)
        buffer = _io.BytesIO()
        image = nib.Nifti1Image(volume_xyz(n_slices=3, size=64).astype(np.float32), None, header)
        holder = nib.FileHolder(fileobj=buffer)
        image.to_file_map({"image": holder, "header": holder})
        data = bytearray(buffer.getvalue())
        # nibabel will not write a voxel size of 0, so the file is patched: pixdim[1] at byte 80.
        data[80:84] = np.float32(0.0).tobytes()
        return bytes(data)

    unknown = read_scan(nifti(0), "v.nii")
    assert unknown.spacing_mm is None and unknown.slice_thickness_mm is None
    assert unknown.positions_mm is None
    assert any("no voxel size" in note for note in unknown.notes)
    # The same pixdim with an sform: the sform gives the geometry.
    placed = read_scan(nifti(2), "v.nii")
    assert placed.spacing_mm == pytest.approx((0.8, 0.9)) and placed.slice_thickness_mm == 3.0
    assert not any("no voxel size" in note for note in placed.notes)


@pytest.mark.parametrize(
    ("study_date", "expected"), [("20250314", "2025-03-14"), ("2025", None), ("", None)]
)
def test_the_scan_date_comes_from_a_valid_dicom_study_date(study_date, expected):
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    scan = read_scan(encode_dicom(pixels, study_date=study_date), "IM1.dcm")
    assert scan.header.acquired == expected


def test_dicom_without_preamble_or_extension_is_read():
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    assert read_scan(encode_dicom(pixels, preamble=False), "IM0001.dcm").n_slices == 1
    assert read_scan(encode_dicom(pixels), "IM0001").n_slices == 1


def test_multi_frame_dicom_gives_one_slice_per_frame():
    frames = np.stack([synthetic_slice((64, 64), seed=k)[..., 1] for k in range(3)]).astype(
        np.uint16
    )
    scan = read_scan(encode_dicom(frames), "multi.dcm")
    assert scan.n_slices == 3


def test_monochrome1_is_inverted():
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    normal = read_scan(encode_dicom(pixels), "a.dcm").slices[0, ..., 1].astype(int)
    inverted = read_scan(encode_dicom(pixels, photometric="MONOCHROME1"), "b.dcm").slices[0, ..., 1]
    assert np.corrcoef(normal.ravel(), inverted.astype(int).ravel())[0, 1] < -0.9


def _series(n_slices: int, step_mm: float, series_uid: str = "1.2.3.4"):
    """DICOM files whose slice k has intensity level k and z = k * step (given shuffled)."""
    files = []
    for k in range(n_slices):
        pixels = synthetic_slice((64, 64), seed=k)[..., 1].astype(np.uint16) // 4 + 100 * k
        # Instance numbers run backwards so that only the positions give the right order.
        data = encode_dicom(
            pixels, position_z=k * step_mm, instance=n_slices - k, series_uid=series_uid
        )
        files.append((f"IM{k:04d}.dcm", data))
    order = [3, 0, 4, 1, 2][:n_slices] if n_slices == 5 else list(reversed(range(n_slices)))
    return [files[k] for k in order]


def test_dicom_series_is_ordered_by_position_with_spacing():
    scans = read_uploads(_series(5, step_mm=2.5))
    assert len(scans) == 1
    scan = scans[0]
    assert scan.n_slices == 5
    assert scan.names == tuple(f"IM{k:04d}.dcm" for k in range(5))
    means = scan.slices[..., 1].reshape(5, -1).mean(axis=1)
    assert np.all(np.diff(means) > 0)
    assert scan.slice_thickness_mm == pytest.approx(2.5)
    assert scan.spacing_mm == (0.5, 0.75)
    # The note names the stored bit depth, not an internal working type.
    assert "16-bit intensities were rescaled to 8 bits (0-255) for the models" in scan.notes


def test_two_dicom_series_and_a_png_are_three_scans(tmp_path):
    files = _series(3, 3.0, "1.2.3.1") + _series(2, 3.0, "1.2.3.2")
    files.append(("other.png", encode_pil(synthetic_slice((64, 64)), "PNG")))
    paths = []
    for index, (name, data) in enumerate(files):
        path = tmp_path / f"{index}_{name}"
        path.write_bytes(data)
        paths.append(path)
    scans = read_paths(paths)
    assert sorted(scan.n_slices for scan in scans) == [1, 2, 3]


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_volume_gives_axial_slices_with_voxel_size(gz):
    volume = volume_xyz(n_slices=4, size=64)
    name = "brain.nii.gz" if gz else "brain.nii"
    scan = read_scan(encode_nifti(volume, zooms=(0.9, 0.8, 3.0), gz=gz), name)
    assert scan.source_format == "nifti"
    assert scan.n_slices == 4
    assert scan.spacing_mm == pytest.approx((0.8, 0.9))
    assert scan.slice_thickness_mm == pytest.approx(3.0)
    assert scan.sequences_present == FLAIR_ONLY


def test_nifti_slices_are_shown_in_radiological_view():
    volume = volume_xyz(n_slices=3, size=64)
    # Brighten the patient's right-anterior quarter (high x and y in RAS+) of the top slice.
    volume[32:, 32:, 2] += 2000
    scan = read_scan(encode_nifti(volume), "marker.nii")
    top = scan.slices[2, ..., 1].astype(float)
    quarters = {
        "top-left": top[:32, :32].mean(),
        "top-right": top[:32, 32:].mean(),
        "bottom-left": top[32:, :32].mean(),
        "bottom-right": top[32:, 32:].mean(),
    }
    # Radiological view: anterior at the top, patient right on the image's left.
    assert max(quarters, key=quarters.get) == "top-left"
    assert scan.slices[0, ..., 1].mean() < top.mean(), "slices run from inferior to superior"


@pytest.mark.parametrize("layout", ["2-D", "4-D with one volume"])
def test_nifti_single_slice_layouts(layout):
    grey = volume_xyz(n_slices=1, size=64)
    volume = grey[..., 0] if layout == "2-D" else grey[..., np.newaxis]
    scan = read_scan(encode_nifti(volume, zooms=(0.9, 0.8, 3.0)), "slice.nii")
    assert scan.slices.shape == (1, 64, 64, 3)
    assert scan.spacing_mm == (0.8, 0.9)
    assert scan.slice_thickness_mm is None


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg", "tiff_deflate", "packbits"])
def test_compressed_tiffs_are_read(compression):
    import io

    from PIL import Image

    pages = [synthetic_slice((64, 80), seed=k) for k in range(2)]
    buffer = io.BytesIO()
    frames = [Image.fromarray(page) for page in pages]
    frames[0].save(buffer, "TIFF", compression=compression, save_all=True, append_images=frames[1:])
    scan = read_scan(buffer.getvalue(), "case.tif")
    assert scan.slices.shape == (2, 64, 80, 3)
    tolerance = 6 if compression == "jpeg" else 0
    assert np.abs(scan.slices.astype(int) - np.stack(pages)).mean() <= tolerance


def test_numbered_slices_of_one_case_become_one_ordered_volume():
    slices = {n: synthetic_slice(seed=n) for n in (1, 2, 10)}
    files = [
        ("CASE_A_10.tif", encode_tiff(slices[10])),
        ("other.png", encode_pil(synthetic_slice(seed=7), "PNG")),
        ("CASE_A_2.tif", encode_tiff(slices[2])),
        ("CASE_A_1.tif", encode_tiff(slices[1])),
        ("CASE_A_3.tif", encode_tiff(synthetic_slice((128, 128), seed=3))),  # another size
        ("CASE_B_1.tif", encode_tiff(slices[1])),  # another case, alone
    ]
    volume, apart, png, odd, single = read_uploads(files)
    # Slices 1 and 2 are neighbours; 10 is not (3 to 9 are missing at this size).
    assert volume.names == ("CASE_A_1.tif", "CASE_A_2.tif")
    np.testing.assert_array_equal(volume.slices, np.stack([slices[1], slices[2]]))
    assert volume.source_format == "tiff"
    assert apart.names == ("CASE_A_10.tif",) and apart.n_slices == 1
    assert png.names == ("other.png",) and odd.names == ("CASE_A_3.tif",)
    assert single.names == ("CASE_B_1.tif",) and single.n_slices == 1


def test_a_monochrome1_series_keeps_one_stored_value_one_intensity_in_every_slice():
    # The same background (stored 1000) in every slice, slices of different brightest pixel
    # and a square that is darker (higher stored value) from slice to slice.
    files = []
    for k in range(3):
        pixels = np.full((64, 64), 1000, dtype=np.uint16)
        pixels[16:48, 16:48] = 200 + 300 * k
        pixels[0, 0] = 1000 + 1000 * k
        data = encode_dicom(pixels, position_z=5.0 * k, instance=k + 1, photometric="MONOCHROME1")
        files.append((f"IM{k}.dcm", data))
    scan = read_uploads(files)[0]
    backgrounds = [int(scan.slices[k, 40, 8, 1]) for k in range(3)]
    squares = [int(scan.slices[k, 32, 32, 1]) for k in range(3)]
    assert len(set(backgrounds)) == 1
    assert squares[0] > squares[1] > squares[2], "a lower stored value shows brighter"


def test_a_file_given_twice_is_one_slice_of_the_series():
    from brainloc.findings import case_findings

    files = _series(3, 5.0)
    scans = read_uploads([*files, ("copy/" + files[0][0], files[0][1])])
    assert [scan.n_slices for scan in scans] == [3]
    assert "1 repeated file(s) of the same image (same SOPInstanceUID) left out" in scans[0].notes
    # Each slice's tumor is counted once in the volume: 3 slices of 100 px, 0.5 x 0.75 x 5 mm.
    findings = case_findings([100] * scans[0].n_slices, scans[0].spacing_mm, 5.0)
    assert findings.volume_ml == pytest.approx(0.5625)


@pytest.mark.parametrize(
    ("orientations", "positions", "reason"),
    [
        # A three-plane localizer: one series, one matrix, three orientations.
        ([(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)], [0, 0, 0], "orientations"),
        # Two echoes at each of two positions.
        ([(1, 0, 0, 0, 1, 0)] * 4, [0, 0, 5, 5], "4 of its 4 images share slice positions"),
    ],
)
def test_a_series_that_is_not_one_stack_is_refused_alone_and_left_out_of_a_study(
    orientations, positions, reason
):
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    odd = [
        (f"odd{k}.dcm", encode_dicom(pixels, position_z=z, instance=k + 1, orientation=o))
        for k, (o, z) in enumerate(zip(orientations, positions, strict=True))
    ]
    with pytest.raises(ScanError, match=f"{reason}.*; upload one stack of slices"):
        read_uploads(odd)
    scans = read_uploads(odd + _series(3, 5.0, series_uid="1.2.3.9"))
    assert [scan.n_slices for scan in scans] == [3]
    assert any(note.startswith("DICOM series left out, not one stack") for note in scans[0].notes)


def test_an_enhanced_mr_file_is_read_like_a_series_of_its_frames():
    # Frame k shows intensity level k at z = 6k mm; stored out of order, each with its own
    # RescaleSlope (stored value = level / slope), as Philips writes enhanced MR.
    levels = [
        synthetic_slice((64, 64), seed=k)[..., 1].astype(np.float64) + 100 * k for k in range(4)
    ]
    stored_order, slopes = [2, 0, 3, 1], [2.0, 1.0, 4.0, 0.5]
    frames = np.stack([levels[k] / slope for k, slope in zip(stored_order, slopes, strict=True)])
    data = encode_enhanced_dicom(
        np.round(frames), [6.0 * k for k in stored_order], spacing=(0.5, 0.75), slopes=slopes
    )
    scan = read_scan(data, "enhanced.dcm")
    assert scan.names == tuple(f"enhanced.dcm [frame {k}]" for k in (2, 4, 1, 3))
    assert scan.spacing_mm == (0.5, 0.75)
    assert scan.slice_thickness_mm == pytest.approx(6.0)
    assert scan.positions_mm == tuple((0.0, 0.0, 6.0 * k) for k in range(4))
    assert scan.header.plane == "axial" and scan.header.description == "AX FLAIR"
    means = scan.slices[..., 1].reshape(4, -1).mean(axis=1)
    assert np.all(np.diff(means) > 20), "in slice order, each frame scaled by its own slope"


def _series_at(positions_z: list[float]) -> list[tuple[str, bytes]]:
    pixels = synthetic_slice((64, 64))[..., 1].astype(np.uint16)
    return [
        (f"IM{k}.dcm", encode_dicom(pixels, position_z=z, instance=k + 1))
        for k, z in enumerate(positions_z)
    ]


def test_a_gap_in_a_dicom_series_is_named_and_gives_no_slice_distance():
    from brainloc.scan_stack import GAP_MARK

    # Slices at z = 0, 5, 10, 25, 30 mm: the two at 15 and 20 mm are missing. Read as five
    # slices 5 mm apart, a tumor there was left out unnoticed and its volume taken as whole.
    scan = read_uploads(_series_at([0, 5, 10, 25, 30]))[0]
    assert scan.n_slices == 5
    assert scan.slice_thickness_mm is None
    (gap,) = [note for note in scan.notes if note.startswith(GAP_MARK)]
    assert "a gap of 15.0 mm between IM2.dcm (slice position 10.0 mm) and IM3.dcm (25.0 mm)" in gap
    assert "closest slices lie 5.0 mm apart" in gap and "no tumor volume is estimated" in gap
    assert scan.gaps_after == (2,)  # the volume rule joins no calls across it
    two = read_uploads(_series_at([0, 5, 10, 25, 30, 35, 50]))[0]
    assert two.gaps_after == (2, 5)
    assert "2 gaps of 15.0 mm between IM2.dcm" in two.notes[0]
    assert "; 15.0 mm between IM5.dcm (slice position 35.0 mm)" in two.notes[0]


@pytest.mark.parametrize(
    ("positions", "gaps"),
    [([0, 5, 20], 1), ([0, 5, 10, 25, 40], 2), ([0, 5, 10, 20, 30], 2)],
)
def test_a_gap_is_found_where_the_median_step_is_itself_a_gap(positions, gaps):
    from brainloc.scan_stack import GAP_MARK

    # Short or half-gapped series: compared with the median step (10, 10 and 7.5 mm here),
    # no step was a gap, and a volume was computed with a slice distance no step had.
    scan = read_uploads(_series_at(positions))[0]
    assert scan.slice_thickness_mm is None
    (gap,) = [note for note in scan.notes if note.startswith(GAP_MARK)]
    assert ("a gap of" if gaps == 1 else f"{gaps} gaps of") in gap
    assert "closest slices lie 5.0 mm apart" in gap


def test_an_evenly_spaced_series_or_a_slightly_uneven_one_has_no_gap():
    from brainloc.scan_stack import GAP_MARK

    # 7 mm is 1.4 times the 5 mm step: a rounding or table position, not a missing slice.
    for positions in ([0, 5, 10, 15], [0, 5, 12, 17, 22]):
        scan = read_uploads(_series_at(positions))[0]
        assert scan.slice_thickness_mm == pytest.approx(5.0)
        assert not any(note.startswith(GAP_MARK) for note in scan.notes)
        assert scan.gaps_after == ()


def test_a_gap_between_the_frames_of_an_enhanced_file_is_named():
    pixels = np.stack([synthetic_slice((64, 64), seed=k)[..., 1] for k in range(4)])
    data = encode_enhanced_dicom(pixels.astype(np.uint16), [12.0, 0.0, 4.0, 16.0])
    scan = read_scan(data, "enhanced.dcm")
    assert scan.slice_thickness_mm is None
    assert (
        "a gap of 8.0 mm between enhanced.dcm [frame 3] (slice position 4.0 mm) and "
        "enhanced.dcm [frame 1] (12.0 mm)" in scan.notes[0]
    )
    assert scan.gaps_after == (1,)


def test_an_enhanced_file_of_two_echoes_per_position_is_not_one_stack():
    pixels = np.stack([synthetic_slice((64, 64), seed=k)[..., 1] for k in range(4)])
    data = encode_enhanced_dicom(pixels.astype(np.uint16), [0.0, 0.0, 5.0, 5.0])
    with pytest.raises(ScanError, match="4 of its 4 images share slice positions"):
        read_scan(data, "echoes.dcm")
    scans = read_uploads([("echoes.dcm", data), *_series(3, 5.0)])
    assert [scan.n_slices for scan in scans] == [3]
    assert "echoes.dcm (4 of its 4 images share" in scans[0].notes[-1]


def test_a_nifti_stored_with_its_slice_axis_first_is_read_like_one_stored_last():
    import nibabel as nib

    volume = volume_xyz(n_slices=3, size=64)
    as_stored = read_scan(encode_nifti(volume, zooms=(0.9, 0.8, 3.0)), "last.nii")
    # The same volume stored as (z, x, y), as a NumPy (slice, row, column) array is, with the
    # affine that says so: axis 0 is superior, axis 1 right, axis 2 anterior.
    affine = np.zeros((4, 4))
    affine[0, 1], affine[1, 2], affine[2, 0], affine[3, 3] = 0.9, 0.8, 3.0, 1.0
    first = nib.Nifti1Image(volume.transpose(2, 0, 1), affine).to_bytes()
    scan = read_scan(first, "first.nii")
    np.testing.assert_array_equal(scan.slices, as_stored.slices)
    assert scan.spacing_mm == as_stored.spacing_mm
    assert scan.slice_thickness_mm == as_stored.slice_thickness_mm


def test_nan_outside_the_brain_of_a_z_scored_nifti_is_background_not_mid_grey():
    volume = volume_xyz(n_slices=3, size=64).astype(np.float32)
    brain = volume > 0
    scored = (volume - volume[brain].mean()) / volume[brain].std()
    scored[~brain] = np.nan
    scan = read_scan(encode_nifti(scored), "zscored.nii")
    raw = read_scan(encode_nifti(volume), "raw.nii")
    outside = raw.slices[..., 1] == 0
    assert np.all(scan.slices[..., 1][outside] == 0)
    assert scan.slices[..., 1][~outside].mean() > 60


@pytest.mark.parametrize("photometric", ["palette", "miniswhite"])
def test_a_tiff_is_read_as_it_is_meant_to_be_seen(photometric):
    import io

    import tifffile

    grey = synthetic_slice((64, 64))[..., 1]
    buffer = io.BytesIO()
    if photometric == "palette":
        # An inverted grey palette: index 0 is white.
        colormap = np.repeat((np.arange(255, -1, -1) * 257).astype(np.uint16)[np.newaxis], 3, 0)
        tifffile.imwrite(buffer, 255 - grey, photometric="palette", colormap=colormap)
    else:
        tifffile.imwrite(buffer, 255 - grey, photometric="miniswhite")
    scan = read_scan(buffer.getvalue(), f"{photometric}.tif")
    shown = scan.slices[0, ..., 1].astype(float)
    assert np.corrcoef(shown.ravel(), grey.astype(float).ravel())[0, 1] > 0.99
    assert scan.sequences_present == FLAIR_ONLY


def _oriented_tiff(pages, orientations: list[int], photometric: str) -> bytes:
    """TIFF bytes of ``pages`` ((H, W[, 3]) arrays), page k with Orientation
    ``orientations[k]``."""
    import io

    import tifffile

    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for page, orientation in zip(pages, orientations, strict=True):
            writer.write(
                page, photometric=photometric, extratags=[(274, "H", 1, orientation, False)]
            )
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_is_turned_by_its_orientation_tag_as_a_jpeg_by_its_exif(orientation):
    import io

    from PIL import Image, ImageOps

    # Not square and not symmetric, so that every flip and quarter turn shows.
    image = synthetic_slice((64, 96))
    image[:8, :16] = 255
    tagged = Image.fromarray(image)
    exif = tagged.getexif()
    exif[274] = orientation
    buffer = io.BytesIO()
    tagged.save(buffer, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
    scan = read_scan(_oriented_tiff(image[np.newaxis], [orientation], "rgb"), "turned.tif")
    np.testing.assert_array_equal(scan.slices[0], expected)
    jpeg = read_scan(encode_pil(image, "JPEG", exif=exif, quality=95), "turned.jpg")
    assert jpeg.shape == scan.shape == expected.shape[:2]


def test_the_pages_of_a_tiff_are_turned_each_by_its_own_orientation():
    grey = np.stack([synthetic_slice((64, 96), seed=k)[..., 1] for k in range(3)])
    grey = grey.astype(np.uint16) * 200  # 16-bit: rescaled over the whole case
    turned = np.stack([np.rot90(page, -1) for page in grey])  # as Orientation 6 shows them
    plain = read_scan(encode_tiff(turned), "plain.tif")
    scan = read_scan(_oriented_tiff(grey, [6, 6, 6], "minisblack"), "case.tif")
    assert scan.shape == (96, 64)
    np.testing.assert_array_equal(scan.slices, plain.slices)
    # Pages stored in different shapes are one case when they are shown in one.
    mixed = read_scan(_oriented_tiff([turned[0], grey[1]], [1, 6], "minisblack"), "mixed.tif")
    assert mixed.slices.shape[:3] == (2, 96, 64)


def test_an_8_bit_palette_tiff_reads_as_the_same_image_stored_plainly_or_as_a_png():
    """A TIFF colour map holds 16-bit entries (an 8-bit colour times 257). Looked up as they
    are, an 8-bit palette image became 16-bit data, was rescaled by its percentiles ("16-bit
    intensities were rescaled", which it never had) and reached the models with other values
    than the same image as a palette PNG or a plain TIFF; Pillow, which decodes the palette
    TIFFs tifffile cannot, takes the colour map's high byte."""
    import io

    import tifffile
    from PIL import Image

    rng = np.random.default_rng(3)
    indices = synthetic_slice((64, 64))[..., 1]
    grey = np.arange(256, dtype=np.uint16) * 257
    colours = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
    for colormap, plain in (
        (np.stack([grey, grey, grey]), indices),
        (colours.T.astype(np.uint16) * 257, colours[indices]),
    ):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, indices, photometric="palette", colormap=colormap)
        scan = read_scan(buffer.getvalue(), "palette.tif")
        png, image = io.BytesIO(), Image.fromarray(indices, "P")
        image.putpalette((colormap.T // 256).astype(np.uint8).ravel().tolist())
        image.save(png, "PNG")
        as_png = read_scan(png.getvalue(), "palette.png")
        np.testing.assert_array_equal(scan.slices, read_scan(encode_tiff(plain), "p.tif").slices)
        np.testing.assert_array_equal(scan.slices, as_png.slices)
        assert not any("16-bit" in note for note in scan.notes), scan.notes
