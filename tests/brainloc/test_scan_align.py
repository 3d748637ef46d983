"""Series on different grids placed on the FLAIR slices by their header geometry: against an
analytic phantom sampled on both grids, at the edges of a slab, and on a real LGG case with
the shipped models."""

from __future__ import annotations

import numpy as np
import pytest

from brainloc.scan_align import RESAMPLED_MARK, combine_series, grid_scan, resample_onto
from brainloc.scans import ALL_SEQUENCES, COMBINED_NOTE, FLAIR_ONLY, Scan, ScanError

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows run anterior-posterior, columns downwards


def phantom(points: np.ndarray) -> np.ndarray:
    """A smooth grey value at patient coordinates (…, 3) in mm (within 0-255 over the
    ±40 mm box the tests use), with no symmetry that a mirrored axis could hide behind."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    waves = 40 * np.sin(x / 17.0 + 0.5) * np.cos(y / 23.0 + 0.3) + 30 * np.sin(z / 19.0)
    return 120 + waves + 0.6 * x + 0.4 * y


def sampled_series(orientation, origin, shape, spacing, n_slices, step) -> Scan:
    """A single-sequence scan holding the phantom on the given grid (slices ``step`` mm
    apart along the normal, first slice's first pixel at ``origin``)."""
    across, down = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(across, down)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    origins = [np.array(origin, float) + k * step * normal for k in range(n_slices)]
    slices = []
    for start in origins:
        points = start + cols[..., None] * spacing[1] * across + rows[..., None] * spacing[0] * down
        slices.append(np.clip(np.rint(phantom(points)), 0, 255).astype(np.uint8))
    placed = grid_scan(
        np.stack(slices), orientation=orientation, first_position=origin, spacing=spacing, step=step
    )
    # The positions grid_scan gives are the ones the phantom was sampled at.
    np.testing.assert_allclose(placed.positions_mm, origins)
    return placed


def flair_grid(n_slices=6, shape=(60, 50)) -> Scan:
    """The reference: axial 5 mm slices, a matrix that is not square, unequal spacing."""
    return sampled_series(AXIAL, (-30.0, -35.0, -10.0), shape, (1.2, 1.1), n_slices, 5.0)


def test_a_series_on_its_own_grid_resamples_to_itself():
    flair = flair_grid()
    values, inside = resample_onto(flair, flair, "FLAIR")
    np.testing.assert_array_equal(values, flair.slices[..., 0])
    assert inside.all()


@pytest.mark.parametrize(
    ("orientation", "origin", "shape", "spacing", "n_slices", "step"),
    [
        # axial at finer pixels and 2 mm slices, shifted
        (AXIAL, (-33.3, -38.1, -14.0), (90, 80), (0.8, 0.7), 30, 2.0),
        # sagittal 1.5 mm slices (x falling) covering the same box (a 3D T1 after contrast)
        (SAGITTAL, (35.0, -38.0, 20.0), (70, 90), (0.6, 0.9), 46, 1.5),
    ],
    ids=["axial-finer", "sagittal"],
)
def test_another_grid_is_sampled_at_the_flair_pixels(
    orientation, origin, shape, spacing, n_slices, step
):
    flair = flair_grid()
    moving = sampled_series(orientation, origin, shape, spacing, n_slices, step)
    values, inside = resample_onto(moving, flair, "post-contrast")
    assert inside.all()
    # Inside the moving series' field of view, the samples match the phantom at the FLAIR
    # pixels to within interpolation error (the phantom spans 180 grey levels).
    truth = flair.slices[..., 0].astype(float)
    covered = values > 0
    assert covered.mean() > 0.85
    error = np.abs(values.astype(float) - truth)[covered]
    assert error.mean() < 1.5 and np.percentile(error, 99) < 5
    # Mirrored rows or columns would not come close.
    for mirrored in (truth[:, ::-1, :], truth[:, :, ::-1]):
        assert np.abs(values.astype(float) - mirrored)[covered].mean() > 10


def test_flair_slices_outside_the_other_slabs_are_left_out_and_counted():
    flair = flair_grid(n_slices=8)  # z = -10 … 25
    pre = sampled_series(AXIAL, (-30.0, -35.0, -10.0), (60, 50), (1.2, 1.1), 8, 5.0)
    # The post-contrast slab ends at z = 12: FLAIR slices at 15, 20 and 25 lie outside it.
    post = sampled_series(AXIAL, (-30.0, -35.0, -12.0), (60, 50), (1.2, 1.1), 13, 2.0)
    case = combine_series({"pre-contrast": pre, "FLAIR": flair, "post-contrast": post})
    assert case.n_slices == 5 and case.names == flair.names[:5]
    assert case.positions_mm == flair.positions_mm[:5]
    np.testing.assert_array_equal(case.slices[..., 1], flair.slices[:5, ..., 0])
    np.testing.assert_array_equal(case.slices[..., 0], pre.slices[:5, ..., 0])
    assert np.abs(case.slices[..., 2].astype(float) - flair.slices[:5, ..., 0]).mean() < 1.5
    assert COMBINED_NOTE in case.notes
    (note,) = [n for n in case.notes if RESAMPLED_MARK in n]
    assert note.startswith("post-contrast lay on other slices or pixel grids than FLAIR and was")
    assert note.endswith("; 3 of 8 FLAIR slice(s) lay outside the other series and were left out")


def test_a_gap_in_the_flair_series_stays_where_it_is_in_the_combined_case():
    from dataclasses import replace

    # Slices missing after FLAIR's second and seventh slices; the post-contrast slab ends
    # before the seventh, so only the first gap is left among the five slices kept.
    flair = replace(flair_grid(n_slices=8), gaps_after=(1, 6))
    pre = sampled_series(AXIAL, (-30.0, -35.0, -10.0), (60, 50), (1.2, 1.1), 8, 5.0)
    post = sampled_series(AXIAL, (-30.0, -35.0, -12.0), (60, 50), (1.2, 1.1), 13, 2.0)
    case = combine_series({"pre-contrast": pre, "FLAIR": flair, "post-contrast": post})
    assert case.n_slices == 5 and case.gaps_after == (1,)
    same_grid = combine_series({name: flair for name in ALL_SEQUENCES})
    assert same_grid.gaps_after == (1, 6)


def test_series_on_one_grid_are_combined_as_they_are():
    flair = flair_grid()
    series = {name: flair for name in ALL_SEQUENCES}
    case = combine_series(series)
    assert not any(RESAMPLED_MARK in n for n in case.notes)
    np.testing.assert_array_equal(case.slices, flair.slices)


def test_what_resampling_cannot_mend_is_refused_with_the_reason():
    flair = flair_grid()
    finer = sampled_series(AXIAL, (-30.0, -35.0, -10.0), (90, 80), (0.8, 0.7), 12, 2.5)
    # Without header geometry (a TIFF, say), the grid check's own message stands.
    bare = Scan(
        slices=finer.slices, source_format="tiff", names=finer.names, sequences_present=FLAIR_ONLY
    )
    with pytest.raises(ScanError, match="pre-contrast series has 12 slice.* FLAIR 6"):
        combine_series({"pre-contrast": bare, "FLAIR": flair, "post-contrast": finer})
    # Unevenly spaced slices.
    positions = list(finer.positions_mm)
    positions[5] = (positions[5][0], positions[5][1], positions[5][2] + 1.5)
    uneven = Scan(**{**finer.__dict__, "positions_mm": tuple(positions)})
    with pytest.raises(ScanError, match="post-contrast series' slices are not evenly spaced"):
        combine_series({"pre-contrast": finer, "FLAIR": flair, "post-contrast": uneven})
    # No overlap at all.
    far = sampled_series(AXIAL, (-30.0, -35.0, 200.0), (60, 50), (1.2, 1.1), 6, 5.0)
    with pytest.raises(ScanError, match="do not cover any FLAIR slice"):
        combine_series({"pre-contrast": finer, "FLAIR": flair, "post-contrast": far})


def test_a_real_case_with_its_t1_series_at_half_resolution_keeps_its_calls(
    shipped_pipeline, lgg_dir
):
    """The LGG slices are co-registered 256² on one grid. Written as DICOM with the
    post-contrast series at half the matrix (128², twice the pixel spacing, each pixel the
    mean of the four it replaces, placed at their centre), resampling must bring back nearly
    the same channel and the same tumor calls as the original."""
    import tifffile

    from brainloc.casework import analyze_sequences
    from tests.brainloc.conftest import LGG_CASE
    from tests.brainloc.scan_factory import encode_dicom

    files = sorted(
        (f for f in lgg_dir.glob(f"{LGG_CASE}_*.tif") if not f.name.endswith("_mask.tif")),
        key=lambda f: int(f.stem.rsplit("_", 1)[1]),
    )
    volume = np.stack([tifffile.imread(f) for f in files]).astype(np.uint16) * 16

    def series(channel: int, uid: int, half: bool = False) -> list[tuple[str, bytes]]:
        out = []
        for n, image in enumerate(volume[..., channel]):
            pixels, spacing, shift = image, (0.9, 0.9), 0.0
            if half:  # 2×2 means, at the centre of the four pixels they replace
                pixels = image.reshape(128, 2, 128, 2).mean(axis=(1, 3)).astype(np.uint16)
                spacing, shift = (1.8, 1.8), 0.45
            out.append((f"{uid}-{n}", encode_dicom(
                pixels, position=(shift, shift, 5.0 * n),
                instance=n + 1, spacing=spacing, thickness=5.0,
                series_uid=f"1.2.826.0.1.3680043.8.498.{uid}",
            )))  # fmt: skip
        return out

    same = {name: series(c, 50 + c) for c, name in enumerate(ALL_SEQUENCES)}
    half = same | {"post-contrast": series(2, 60, half=True)}
    original = analyze_sequences(shipped_pipeline, same)
    resampled = analyze_sequences(shipped_pipeline, half)
    assert any(
        n.startswith("post-contrast lay on") and RESAMPLED_MARK in n for n in resampled.notes
    )
    assert not any(RESAMPLED_MARK in n for n in original.notes)
    assert len(resampled.slices) == len(original.slices) == len(files)
    before = np.stack([s.image for s in original.slices])
    after = np.stack([s.image for s in resampled.slices])
    np.testing.assert_array_equal(after[..., :2], before[..., :2])
    correlation = np.corrcoef(before[..., 2].ravel(), after[..., 2].ravel())[0, 1]
    assert correlation > 0.95
    calls = [
        (one.result.has_tumor, other.result.has_tumor)
        for one, other in zip(original.slices, resampled.slices, strict=True)
    ]
    assert any(call for call, _ in calls)
    assert sum(one != other for one, other in calls) <= 1


def _dicom_files(scan: Scan, uid: int, orientation) -> list[tuple[str, bytes]]:
    """The scan written as a DICOM series (12-bit values), its files in a shuffled order."""
    from tests.brainloc.scan_factory import encode_dicom

    files = [
        (f"{uid}-{k}", encode_dicom(
            slice_[..., 0].astype(np.uint16) * 16, position=position, instance=k + 1,
            spacing=scan.spacing_mm, thickness=scan.slice_thickness_mm,
            series_uid=f"1.2.826.0.1.3680043.8.498.{uid}", orientation=orientation,
        ))
        for k, (slice_, position) in enumerate(zip(scan.slices, scan.positions_mm, strict=True))
    ]  # fmt: skip
    order = np.random.default_rng(uid).permutation(len(files))
    return [files[k] for k in order]


def test_a_sagittal_dicom_series_read_from_files_lands_on_the_axial_flair_slices():
    from brainloc.scans import read_uploads

    flair = flair_grid()
    sagittal = sampled_series(SAGITTAL, (35.0, -38.0, 20.0), (70, 90), (0.6, 0.9), 46, 1.5)
    (read_flair,) = read_uploads(_dicom_files(flair, 71, AXIAL))
    (read_sagittal,) = read_uploads(_dicom_files(sagittal, 72, SAGITTAL))
    assert read_sagittal.header.plane == "sagittal" and read_flair.header.plane == "axial"
    case = combine_series(
        {"pre-contrast": read_flair, "FLAIR": read_flair, "post-contrast": read_sagittal}
    )
    assert case.n_slices == flair.n_slices
    # Each series was rescaled to 8 bits on its own, so compare shapes of the values, not levels.
    post, truth = case.slices[..., 2].astype(float), flair.slices[..., 0].astype(float)
    covered = post > 0
    assert np.corrcoef(post[covered], truth[covered])[0, 1] > 0.99


def _rotation(angles: tuple[float, float, float]) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


@pytest.mark.parametrize("seed", range(6))
def test_any_oblique_grid_resamples_onto_itself_exactly_and_onto_the_flair_closely(seed):
    rng = np.random.default_rng(seed)
    rotation = _rotation(tuple(rng.uniform(-40, 40, 3)))
    orientation = tuple(float(v) for v in (*rotation[:, 0], *rotation[:, 1]))
    spacing = tuple(float(v) for v in rng.uniform(0.6, 1.4, 2))
    shape = (int(rng.integers(70, 90)), int(rng.integers(70, 90)))
    # The slab centred near the FLAIR box's centre (-3, 0, 2.5), give or take 5 mm.
    half_extent = (
        shape[1] / 2 * spacing[1] * rotation[:, 0]
        + shape[0] / 2 * spacing[0] * rotation[:, 1]
        + 20 * 1.5 * rotation[:, 2]
    )
    centre = np.array([-3.0, 0.0, 2.5]) + rng.uniform(-5, 5, 3)
    origin = tuple(float(v) for v in centre - half_extent)
    oblique = sampled_series(orientation, origin, shape, spacing, 40, 1.5)
    values, inside = resample_onto(oblique, oblique, "post-contrast")
    np.testing.assert_array_equal(values, oblique.slices[..., 0])
    assert inside.all()
    flair = flair_grid()
    values, inside = resample_onto(oblique, flair, "post-contrast")
    covered = values > 0
    assert covered[inside].mean() > 0.5
    error = np.abs(values.astype(float) - flair.slices[..., 0])
    assert error[covered].mean() < 2.0


def _nifti_of(scan: Scan) -> bytes:
    """An axial scan written as the NIfTI volume that BrainLoc's reader shows as that scan.

    The reader shows voxel (x, y, z) of the RAS-oriented volume at row ny-1-y, column nx-1-x;
    for an axial DICOM-style grid (LPS, rows along +y_LPS, columns along +x_LPS) that is the
    affine below, with the first pixel's LPS position turned into RAS.
    """
    import nibabel as nib

    dy, dx = scan.spacing_mm
    n, ny, nx = scan.slices.shape[:3]
    step = scan.positions_mm[1][2] - scan.positions_mm[0][2]
    x0, y0, z0 = scan.positions_mm[0]
    affine = np.diag([dx, dy, step, 1.0])
    affine[:3, 3] = (-x0 - dx * (nx - 1), -y0 - dy * (ny - 1), z0)
    volume = scan.slices[..., 0].transpose(2, 1, 0)[::-1, ::-1, :].astype(np.int16) * 8
    return nib.Nifti1Image(np.ascontiguousarray(volume), affine).to_bytes()


def test_nifti_volumes_share_dicom_s_coordinates_and_are_resampled_alike():
    from brainloc.scans import read_scan, read_uploads

    flair = flair_grid()
    # The same grid as a DICOM series and as a NIfTI volume: the same slices, the same pixels.
    (as_dicom,) = read_uploads(_dicom_files(flair, 81, AXIAL))
    as_nifti = read_scan(_nifti_of(flair), "flair.nii")
    np.testing.assert_allclose(as_nifti.positions_mm, as_dicom.positions_mm, atol=1e-6)
    np.testing.assert_allclose(as_nifti.header.orientation, AXIAL, atol=1e-9)
    case = combine_series({"pre-contrast": as_nifti, "FLAIR": as_dicom, "post-contrast": as_nifti})
    assert not any(RESAMPLED_MARK in n for n in case.notes)  # one grid: nothing resampled
    # A finer NIfTI volume of the same box lands on the FLAIR slices like a DICOM series would.
    finer = sampled_series(AXIAL, (-33.3, -38.1, -14.0), (90, 80), (0.8, 0.7), 30, 2.0)
    moved = read_scan(_nifti_of(finer), "t1.nii")
    case = combine_series({"pre-contrast": moved, "FLAIR": as_nifti, "post-contrast": as_nifti})
    (note,) = [n for n in case.notes if RESAMPLED_MARK in n]
    assert note.startswith("pre-contrast lay on other slices")
    pre, truth = case.slices[..., 0].astype(float), flair.slices[..., 0].astype(float)
    covered = pre > 0
    assert covered.mean() > 0.85
    assert np.corrcoef(pre[covered], truth[covered])[0, 1] > 0.99
