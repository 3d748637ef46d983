"""Follow-up size comparison on stored case findings whose changes are known."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlmodel import Session

from brainloc.followup import NO_OUTLINE, NO_TUMOR, NOT_MEASURED, baseline_choices, compare


def _case(
    longest=None,
    perpendicular=None,
    unit="mm",
    volume=None,
    tumor_slices=(),
    slices=20,
    scan_date=None,
):
    section = (
        None
        if longest is None
        else {"slice": 7, "longest": longest, "perpendicular": perpendicular, "unit": unit}
    )
    return {
        "largest_cross_section": section,
        "volume_ml": volume,
        "tumor_slices": list(tumor_slices),
        "n_slices": slices,
        "scan_date": scan_date,
    }


def _rows(comparison):
    return {row.label: row for row in comparison.rows}


def test_growth_in_millimetres_is_given_in_percent_of_the_baseline():
    baseline = _case(40.0, 30.0, volume=10.0, tumor_slices=range(5, 12), scan_date="2025-03-14")
    follow_up = _case(46.0, 33.0, volume=12.5, tumor_slices=range(5, 14), scan_date="2025-09-10")
    comparison = compare(baseline, follow_up, baseline_models="a v1", follow_up_models="a v1")
    assert comparison.product_change == pytest.approx(46 * 33 / 1200 - 1)  # +26.5 %
    assert comparison.volume_change == pytest.approx(0.25)
    rows = _rows(comparison)
    section = rows["Largest cross-section (longest × perpendicular)"]
    assert section.baseline == "40.0 × 30.0 mm (slice 8)"
    assert section.follow_up == "46.0 × 33.0 mm (slice 8)"
    assert section.change == "+26%"
    assert rows["Product of the diameters"].baseline == "1200 mm²"
    assert rows["Estimated tumor volume"].change == "+25%"
    assert rows["Slices with tumor"].baseline == "7 of 20"
    assert rows["Slices with tumor"].change == "+2"
    assert rows["Scan date"].baseline == "2025-03-14" and rows["Scan date"].change == "+180 days"
    assert comparison.notes == ()


def test_scan_dates_say_when_the_baseline_is_the_later_scan_or_unknown():
    later = compare(_case(scan_date="2025-09-10"), _case(scan_date="2025-03-14"))
    assert _rows(later)["Scan date"].change == "-180 days"
    assert any("baseline was made after this scan" in note for note in later.notes)
    unknown = compare(_case(), _case())
    assert _rows(unknown)["Scan date"].baseline == "not recorded"
    assert any("order of the two scans is the one you chose" in n for n in unknown.notes)
    one = compare(_case(scan_date="2025-03-14"), _case())
    assert _rows(one)["Scan date"].change == "-"
    assert not any("scan" in note for note in one.notes)


def test_shrinkage_and_a_follow_up_without_tumor():
    baseline = _case(40.0, 30.0, volume=10.0, tumor_slices=[3])
    smaller = compare(baseline, _case(20.0, 30.0, volume=4.0, tumor_slices=[3]))
    assert smaller.product_change == pytest.approx(-0.5)
    assert _rows(smaller)["Estimated tumor volume"].change == "-60%"
    gone = compare(baseline, _case(volume=0.0))
    assert gone.product_change == pytest.approx(-1.0)
    assert _rows(gone)["Largest cross-section (longest × perpendicular)"].follow_up == NO_TUMOR
    assert any("does not rule out tumor" in note for note in gone.notes)


def test_a_tumor_new_at_follow_up_has_no_percentage():
    comparison = compare(_case(volume=0.0), _case(30.0, 20.0, volume=3.0, tumor_slices=[4]))
    assert comparison.product_change is None and comparison.volume_change is None
    rows = _rows(comparison)
    assert rows["Largest cross-section (longest × perpendicular)"].change == "new"
    assert rows["Estimated tumor volume"].change == "new"


def test_pixels_are_not_compared_between_scans():
    comparison = compare(_case(40.0, 30.0, unit="px"), _case(50.0, 30.0, unit="px"))
    assert comparison.product_change is None
    assert _rows(comparison)["Largest cross-section (longest × perpendicular)"].change == "-"
    assert "Product of the diameters" not in _rows(comparison)
    assert any("pixels" in note for note in comparison.notes)
    assert any("volume needs" in note for note in comparison.notes)


def test_an_analysis_from_before_the_diameters_says_so():
    old = {"tumor_slices": [2, 3], "n_slices": 10, "volume_ml": 5.0}
    comparison = compare(old, _case(30.0, 20.0, volume=6.0, tumor_slices=[2, 3]))
    rows = _rows(comparison)
    assert rows["Largest cross-section (longest × perpendicular)"].baseline == NOT_MEASURED
    assert comparison.product_change is None
    assert comparison.volume_change == pytest.approx(0.2)
    assert any("before diameters were measured" in note for note in comparison.notes)


def test_different_models_are_pointed_out():
    comparison = compare(
        _case(40.0, 30.0),
        _case(40.0, 30.0),
        baseline_models="brainloc-classifier v2.2.0",
        follow_up_models="brainloc-classifier v2.3.0",
    )
    assert comparison.product_change == pytest.approx(0.0)
    assert any("different models" in note for note in comparison.notes)


def test_earlier_scans_are_offered_first_as_baselines():
    def analysis(id_, hour, scan=None, reference="P-7"):
        findings = {"scan_date": scan} if scan else {}
        return SimpleNamespace(
            id=id_, case_reference=reference, findings=findings,
            created_at=datetime(2026, 11, 27, hour, 0, tzinfo=UTC),
        )  # fmt: skip

    mine = [
        analysis(1, 8, "2025-03-14"),
        analysis(2, 9, "2025-09-10"),  # the follow-up
        analysis(3, 10, "2024-11-02"),
        analysis(4, 11),  # a TIFF: no scan date
        analysis(5, 12, "2026-01-20"),  # made after the follow-up
        analysis(6, 7),
    ]
    choices = baseline_choices(mine, 2)
    assert list(choices) == [1, 3, 4, 6, 5]
    assert choices[1] == "P-7 · #1 · scan 2025-03-14"
    assert choices[4] == "P-7 · #4 · uploaded 2026-11-27 11:00"
    # Without the follow-up's scan date, the latest upload first.
    assert list(baseline_choices(mine, 4)) == [5, 3, 2, 1, 6]


def test_a_scan_called_tumor_without_an_outline_is_not_reported_as_tumor_free():
    # The classifier called the follow-up tumor, the segmenter outlined nothing: its size is
    # unknown, not zero, so there is no -100 % and no "no tumor detected".
    baseline = _case(40.0, 30.0, volume=10.0, tumor_slices=[3])
    unoutlined = _case(volume=0.0)
    comparison = compare(baseline, unoutlined, baseline_called=True, follow_up_called=True)
    rows = _rows(comparison)
    section = rows["Largest cross-section (longest × perpendicular)"]
    assert (section.follow_up, section.change) == (NO_OUTLINE, "-")
    assert (rows["Estimated tumor volume"].follow_up, rows["Estimated tumor volume"].change) == (
        NO_OUTLINE,
        "-",
    )
    assert comparison.product_change is None and comparison.volume_change is None
    assert "Product of the diameters" not in rows
    assert not any("No tumor was detected" in note for note in comparison.notes)
    assert any("follow-up was called tumor" in note for note in comparison.notes)
    # The same findings with a negative call are a follow-up without tumor, as before.
    negative = compare(baseline, unoutlined, baseline_called=True, follow_up_called=False)
    assert negative.product_change == pytest.approx(-1.0)
    assert any("No tumor was detected" in note for note in negative.notes)


def test_compare_own_takes_each_analysis_call_from_the_database(empty_database_url):
    from brainloc.followup import compare_own
    from db import clinical
    from tests.db.clinical_factory import make_slice, make_user, migrated_engine

    engine = migrated_engine(empty_database_url)
    section = {"slice": 0, "longest": 40.0, "perpendicular": 30.0, "unit": "mm"}
    with Session(engine) as session:
        owner = make_user(session, "alice")

        def analysis(probability, area, findings):
            return clinical.create_analysis(
                session, owner_id=owner.id, case_reference="P-1",
                slices=[make_slice(probability, area=area)], source_name="s.dcm",
                source_format="dicom", classifier=("c", "1"), segmenter=("s", "1"),
                decision_threshold=0.5, findings=findings,
            )  # fmt: skip

        before = analysis(0.9, 16, {"n_slices": 1, "tumor_slices": [0],
                                     "largest_cross_section": section})  # fmt: skip
        after = analysis(0.93, 0, {"n_slices": 1, "tumor_slices": [],
                                    "largest_cross_section": None})  # fmt: skip
        assert after.has_tumor
        _, comparison = compare_own(
            session, owner_id=owner.id, analysis_id=after.id, baseline_id=before.id
        )
    cells = _rows(comparison)["Largest cross-section (longest × perpendicular)"]
    assert cells.follow_up == NO_OUTLINE and comparison.product_change is None
