"""History table helpers, model-card parsing and the chart builders, on plain values."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pandas as pd
import pytest

from brainloc import charts
from brainloc.history import day_range, history_frame, shown_frame, to_csv, weekly_summary
from brainloc.model_card import load_cards
from tests.brainloc.conftest import build_tiny_models


def _analysis(
    analysis_id, when, positive, probability=0.5, reference="R", arithmetic="", in_error=""
):
    """An analysis row; ``in_error``: the reason it was marked entered in error, if it was."""
    return SimpleNamespace(
        id=analysis_id,
        created_at=when,
        case_reference=reference,
        has_tumor=positive,
        tumor_probability=probability,
        slice_count=1,
        findings={"tumor_slices": [0] if positive else []},
        classifier_name="c",
        classifier_version="1",
        segmenter_name="s",
        segmenter_version="2",
        arithmetic=arithmetic,
        entered_in_error_at=when if in_error else None,
        entered_in_error_reason=in_error,
    )


def test_weekly_summary_counts_weeks_and_fills_gaps():
    rows = [
        _analysis(1, datetime(2026, 11, 2, 9, tzinfo=UTC), True),  # Monday, week of Nov 2
        _analysis(2, datetime(2026, 11, 8, 23, tzinfo=UTC), False),  # Sunday, same week
        _analysis(3, datetime(2026, 11, 17, tzinfo=UTC), True),  # week of Nov 16
    ]
    weekly = weekly_summary(history_frame(rows, {}))
    assert weekly["week"].tolist() == [date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16)]
    assert weekly["analyses"].tolist() == [2, 0, 1]
    # A week without analyses has no share positive (not "0 % positive").
    share = weekly["share_positive"].tolist()
    assert share[0] == 0.5 and math.isnan(share[1]) and share[2] == 1.0
    assert weekly_summary(history_frame([], {})).empty


def test_weekly_chart_leaves_a_gap_for_a_week_without_analyses():
    rows = [
        _analysis(1, datetime(2026, 11, 2, 9, tzinfo=UTC), False),
        _analysis(2, datetime(2026, 11, 17, tzinfo=UTC), True),
    ]
    bars, line = charts.weekly_chart(weekly_summary(history_frame(rows, {}))).data
    assert list(bars.y) == [1, 0, 1]
    share = list(line.y)
    assert share[0] == 0.0 and math.isnan(share[1]) and share[2] == 100.0
    assert not line.connectgaps  # plotly draws no line through the empty week


def test_csv_holds_notes_and_iso_times():
    frame = history_frame(
        [
            _analysis(7, datetime(2026, 11, 2, 9, 30, tzinfo=UTC), True, 0.93, "CASE,1"),
            _analysis(8, datetime(2026, 11, 3, 9, 30, tzinfo=UTC), False, 0.1, "B", "bfloat16"),
        ],
        {7: 'He said "left", then stopped.'},
    )
    parsed = pd.read_csv(pd.io.common.BytesIO(to_csv(frame)))
    assert parsed.loc[0, "created_at"] == "2026-11-02T09:30:00Z"
    assert parsed.loc[0, "case_reference"] == "CASE,1"
    assert parsed.loc[0, "note"] == 'He said "left", then stopped.'
    assert parsed.loc[0, "decision"] == "tumor" and parsed.loc[0, "tumor_probability"] == 0.93
    # The models, and the arithmetic they ran in where it was recorded.
    assert parsed["models"].tolist() == ["c v1; s v2", "c v1; s v2 (bfloat16)"]


def test_csv_holds_the_largest_cross_section_and_the_volume():
    measured = _analysis(1, datetime(2026, 11, 2, tzinfo=UTC), True)
    measured.findings = {
        "tumor_slices": [3, 4],
        "largest_cross_section": {
            "slice": 4,
            "longest": 42.06,
            "perpendicular": 30.54,
            "unit": "mm",
        },
        "volume_ml": 12.5,
    }
    old = _analysis(2, datetime(2026, 11, 3, tzinfo=UTC), True)  # before diameters
    clean = _analysis(3, datetime(2026, 11, 4, tzinfo=UTC), False)
    clean.findings = {"tumor_slices": [], "largest_cross_section": None, "volume_ml": 0.0}
    parsed = pd.read_csv(pd.io.common.BytesIO(to_csv(history_frame([measured, old, clean], {}))))
    assert parsed.loc[0, ["longest_diameter", "perpendicular_diameter"]].tolist() == [42.1, 30.5]
    assert parsed.loc[0, "diameter_unit"] == "mm" and parsed.loc[0, "volume_ml"] == 12.5
    assert parsed.loc[[1, 2], "longest_diameter"].isna().all()
    assert parsed.loc[1, "volume_ml"] != parsed.loc[1, "volume_ml"]  # empty: not measured
    assert parsed.loc[2, "volume_ml"] == 0.0
    # On the page the diameters are one column of text.
    shown = shown_frame(history_frame([measured, old, clean], {}))
    assert shown["largest_cross_section"].tolist() == ["42.1 × 30.5 mm", "", ""]
    assert "longest_diameter" not in shown.columns


def test_day_range_is_inclusive_and_checked():
    start, end = day_range(date(2026, 11, 1), date(2026, 11, 1))
    assert (end - start).days == 1 and start.tzinfo is UTC
    assert day_range(None, None) == (None, None)
    with pytest.raises(ValueError, match="after"):
        day_range(date(2026, 11, 2), date(2026, 11, 1))


def test_gauge_marks_the_threshold_and_colours_the_decision():
    figure = charts.probability_gauge(0.8, 0.35)
    gauge = figure.data[0].gauge
    assert gauge.threshold.value == 35 and figure.data[0].value == 80
    assert gauge.bar.color == charts.TUMOR_RED
    assert charts.probability_gauge(0.2, 0.35).data[0].gauge.bar.color == charts.CLEAR_GREEN
    with pytest.raises(ValueError):
        charts.probability_gauge(1.2, 0.5)


def test_probabilities_are_never_shown_as_certain():
    from brainloc.findings_text import probability_text

    shown = [probability_text(p) for p in (0.0, 0.0004, 0.0005, 0.123, 0.9994, 0.9995, 1.0)]
    assert shown == ["<0.1%", "<0.1%", "0.1%", "12.3%", "99.9%", ">99.9%", ">99.9%"]
    # The gauge follows the same bounds.
    for probability, prefix, value in ((0.99996, ">", 99.9), (0.0001, "<", 0.1), (0.5, "", 50)):
        number = charts.probability_gauge(probability, 0.5).data[0]
        assert (number.number.prefix or "", number.value) == (prefix, value)
    # So does the history table's bar, while the CSV export keeps the stored value.
    when = datetime(2026, 11, 2, 9, tzinfo=UTC)
    frame = history_frame(
        [
            _analysis(1, when, True, 0.99996),
            _analysis(2, when, False, 0.00004),
            _analysis(3, when, True, 0.6789),
        ],
        {},
    )
    assert shown_frame(frame)["tumor_probability"].tolist() == [99.9, 0.1, 67.9]
    exported = pd.read_csv(pd.io.common.BytesIO(to_csv(frame)))["tumor_probability"]
    assert exported.tolist() == [0.99996, 0.00004, 0.6789]


def test_analyses_entered_in_error_show_their_reason_and_are_not_counted_in_the_weeks():
    when = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = [_analysis(1, when, True), _analysis(2, when, True, in_error="Wrong patient")]
    frame = history_frame(rows, {})
    assert frame["entered_in_error"].tolist() == ["", "Wrong patient"]
    assert b"Wrong patient" in to_csv(frame)
    weekly = weekly_summary(frame)
    assert weekly["analyses"].tolist() == [1]
    assert weekly_summary(history_frame(rows[1:], {})).empty


def test_weekly_chart_counts_whole_analyses():
    """A week with one analysis must not get ticks at 0.2, 0.4 ... analyses."""
    rows = [_analysis(1, datetime(2026, 11, 2, 9, tzinfo=UTC), True)]
    axis = charts.weekly_chart(weekly_summary(history_frame(rows, {}))).layout.yaxis
    assert axis.dtick == 1 and axis.tickformat == "d"
    busy = [_analysis(k, datetime(2026, 11, 2, 9, tzinfo=UTC), k % 2 == 0) for k in range(40)]
    axis = charts.weekly_chart(weekly_summary(history_frame(busy, {}))).layout.yaxis
    assert axis.dtick is None and axis.tickformat == "d"  # plotly picks whole steps itself


def test_case_chart_has_one_point_per_slice():
    figure = charts.case_chart([0.1, 0.9, 0.4], [0, 120, 0], 0.5, selected=1)
    assert list(figure.data[0].x) == [1, 2, 3] and list(figure.data[0].y) == [0, 120, 0]
    assert list(figure.data[1].y) == pytest.approx([10, 90, 40])
    with pytest.raises(ValueError):
        charts.case_chart([0.1], [0, 1], 0.5)


def test_model_cards_read_metrics_confusion_and_roc(tmp_path):
    models = build_tiny_models(tmp_path)
    meta = json.loads((models / "classifier.json").read_text())
    meta["decision"] = {"threshold": 0.4, "chosen_on": "validation", "scores": {"a": 1}}
    meta["training"] = {"dataset": "LGG, 88 patients", "split_file": "training/splits.json"}
    meta["metrics"] = {
        "validation": {"accuracy": 0.5},
        "test": {
            "accuracy": 0.97,
            "sensitivity": 0.95,
            "confusion_matrix": {"tp": 40, "fn": 2, "fp": 1, "tn": 57},
            "roc_curve": {"fpr": [0, 1], "tpr": [0, 1]},
            "roc_auc": 0.99,
        },
    }
    (models / "classifier.json").write_text(json.dumps(meta))
    cards, problems = load_cards(models)
    assert problems == []
    classifier, segmenter = cards
    assert classifier.headline[:2] == [("Accuracy", 0.97), ("Sensitivity", 0.95)]
    assert classifier.confusion == [[57, 1], [2, 40]]
    assert classifier.roc == ([0, 1], [0, 1], 0.99)
    assert segmenter.confusion is None and segmenter.roc is None
    assert classifier.thresholds == {"threshold": 0.4, "chosen_on": "validation"}
    assert classifier.decision_text == "A slice is called tumor when P(tumor) ≥ 0.40."
    assert segmenter.decision_text.startswith("A pixel is tumor when its probability")
    meta["decision"] = {
        "threshold": 0.5,
        "test_time_augmentation": "horizontal_flip",
        "extend_threshold": 0.2,
        "extend_chosen_on": "folds",
        "margin": 3,
    }
    (models / "classifier.json").write_text(json.dumps(meta))
    assert load_cards(models)[0][0].decision_text == (
        "A slice is called tumor when P(tumor) ≥ 0.50 (P is the mean over the slice and its "
        "left-right mirror); in an ordered volume, a slice with P ≥ 0.20 is called tumor too "
        "when slices all at or above that connect it to a slice called tumor (volume rule); "
        "margin: 3."
    )  # fmt: skip
    assert classifier.training_summary == "LGG, 88 patients; split file training/splits.json"
    assert classifier.found_by_size == [] and segmenter.found_by_size == []
    (models / "segmenter.json").unlink()
    cards, problems = load_cards(models)
    assert len(cards) == 1 and "segmenter" in problems[0]


def _size_bins(*counts):
    return [
        {"area_percent": name, "tumor_slices": total, "called": called,
         "sensitivity": called / total if total else None}
        for name, (called, total) in zip(("<0.5", ">=0.5"), counts, strict=True)
    ]  # fmt: skip


def test_model_card_tabulates_tumor_slices_found_by_size(tmp_path):
    models = build_tiny_models(tmp_path)
    meta = json.loads((models / "classifier.json").read_text())
    meta["decision"]["threshold"] = 0.5
    meta["metrics"] = {
        "test": {"accuracy": 0.9, "sensitivity_by_tumor_size": _size_bins((3, 4), (0, 0))}
    }
    at_youden = {"threshold": 0.3, "sensitivity_by_tumor_size": _size_bins((9, 9), (9, 9))}
    at_shipped = {"threshold": 0.5, "sensitivity_by_tumor_size": _size_bins((5, 10), (20, 20))}
    meta["training"] = {
        "cross_validation": {
            "out_of_fold": {"at_youden_volume_rule": at_youden, "at_0.5_volume_rule": at_shipped}
        }
    }
    (models / "classifier.json").write_text(json.dumps(meta))
    classifier = load_cards(models)[0][0]
    # The out-of-fold column is the variant at the shipped threshold, not Youden's.
    assert classifier.found_by_size == [
        {
            "tumor area (% of the slice)": "<0.5",
            "test patients": "3 of 4 (75%)",
            "development patients, out of fold": "5 of 10 (50%)",
        },
        {
            "tumor area (% of the slice)": ">=0.5",
            "test patients": "0 of 0 (-)",
            "development patients, out of fold": "20 of 20 (100%)",
        },
    ]


def test_shipped_model_card_states_patients_and_cross_validation():
    from brainloc.model_meta import DEFAULT_MODELS_DIR

    cards, problems = load_cards(DEFAULT_MODELS_DIR)
    assert problems == []
    summary = {card.stem: card.training_summary for card in cards}
    classifier = json.loads((DEFAULT_MODELS_DIR / "classifier.json").read_text())
    record = classifier["training"]["cross_validation"]
    accuracy = record["mean"]["val_accuracy"]
    # Every fold of the split was run, each holding out its own patients.
    assert record["split_folds"] == 4 and [f["fold"] for f in record["folds"]] == [0, 1, 2, 3]
    assert record["out_of_fold"]["cases"] == 75
    assert "trained on the train+val patients" in summary["classifier"]
    expected = f"4-fold patient cross-validation, mean accuracy {accuracy:.3f}"
    assert expected in summary["classifier"]
    auc = record["mean"]["val_auc"]
    assert f"mean accuracy {accuracy:.3f}, ROC AUC {auc:.3f}" in summary["classifier"]
    dice = json.loads((DEFAULT_MODELS_DIR / "segmenter.json").read_text())["training"]
    assert (
        f"mean Dice {dice['cross_validation']['mean']['val_dice_coefficient']:.3f}"
        in (summary["segmenter"])
    )
    # The dataset text already names the split file: it is not repeated.
    assert all(text.count("training/splits.json") == 1 for text in summary.values())
    # The page's size table has both columns for the shipped classifier.
    classifier_card = next(card for card in cards if card.stem == "classifier")
    assert len(classifier_card.found_by_size) == 4
    assert all(len(row) == 3 for row in classifier_card.found_by_size)


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted():
    frame = history_frame(
        [
            _analysis(7, datetime(2026, 11, 2, 9, 30, tzinfo=UTC), True, 0.93, "=HYPERLINK(1)"),
            _analysis(8, datetime(2026, 11, 3, 9, 30, tzinfo=UTC), False, 0.1, "CASE-7"),
        ],
        {7: "@SUM(A1)", 8: "-12 mm smaller, +3 new"},
    )
    parsed = pd.read_csv(pd.io.common.BytesIO(to_csv(frame)))
    assert parsed["case_reference"].tolist() == ["'=HYPERLINK(1)", "CASE-7"]
    assert parsed["note"].tolist() == ["'@SUM(A1)", "'-12 mm smaller, +3 new"]
    assert parsed["tumor_probability"].tolist() == [0.93, 0.1]  # numbers untouched
