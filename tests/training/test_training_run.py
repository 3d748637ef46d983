"""Training end to end on two real restored patients: pack, folds, augmentation, a short
run of each model, and the out-of-fold scoring that cross-validation uses."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from brainloc import modeling
from brainloc.inference import Pipeline
from brainloc.model_card import load_cards
from brainloc.preprocessing import prepare_images, prepare_masks, resize_unit
from training import crossval, export, train
from training.augment import STANDARD, STRONG, augment_pair, jitter_intensity, random_affine, warp
from training.data import SPLITS_FILE, load_case, patient_folds, patient_id
from training.pack import read_pack, write_pack

from .conftest import CASES


@pytest.fixture(scope="module")
def pack(lgg_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("pack") / "two.xz"
    write_pack(lgg_dir, list(CASES), path, 128)
    return path


def test_pack_round_trip_keeps_what_inference_would_see(lgg_dir, pack):
    packed = {c.case: c for c in read_pack(pack)}
    assert sorted(packed) == sorted(CASES)
    original = load_case(lgg_dir, CASES[0])
    got = packed[CASES[0]]
    assert got.images.shape == (20, 128, 128, 3) and got.images.dtype == np.uint8
    # Stored at 8 bits: within half a grey level of the shared resize.
    assert np.abs(got.images / 255.0 - resize_unit(original.images, 128)).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(got.masks, prepare_masks(original.masks, 128)[..., 0] > 0)
    assert got.patient == patient_id(CASES[0])
    only = read_pack(pack, [CASES[1]])
    assert [c.case for c in only] == [CASES[1]] and len(only[0].images) == 24
    with pytest.raises(ValueError, match="does not hold"):
        read_pack(pack, ["TCGA_XX_0000_20000101"])


def test_training_on_cases_the_pack_lacks_is_a_clear_error(pack, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["TCGA_XX_0000_20000101"], "val": [], "test": []}))
    args = ["--model", "segmenter", "--pack", str(pack), "--split-file", str(split)]
    args += ["--train-on", "train+val", "--schedule", "cosine", "--run-dir", str(tmp_path / "r")]
    with pytest.raises(SystemExit, match="cannot read the training data: .* does not hold"):
        train.main(args)


def test_pack_rejects_a_file_that_is_not_a_pack(tmp_path):
    import lzma

    path = tmp_path / "other.xz"
    with lzma.open(path, "wb") as out:
        np.save(out, np.frombuffer(b'{"format": "zip"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="not a BrainLoc training pack"):
        read_pack(path)


def test_patient_folds_partition_by_patient():
    cases = [f"TCGA_AB_{n:04d}_2000010{n % 3}" for n in range(23)] + ["TCGA_AB_0003_19990101"]
    folds = patient_folds(cases, 4, seed=3)
    assert folds == patient_folds(cases, 4, seed=3)
    assert sorted(c for fold in folds for c in fold) == sorted(cases)
    owners = [{patient_id(c) for c in fold} for fold in folds]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not owners[i] & owners[j]
    assert [len(o) for o in owners] == [6, 6, 6, 5]
    with pytest.raises(ValueError):
        patient_folds(cases, 1)


def test_warp_identity_and_flip_are_exact():
    image = np.zeros((1, 32, 32, 1), np.float32)
    image[0, 5:10, 20:25] = 1.0
    identity = np.array([[1, 0, 0, 0, 1, 0, 0, 0]], np.float32)
    mirror = np.array([[-1, 0, 31, 0, 1, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(warp(image, identity), image)
    np.testing.assert_array_equal(warp(image, mirror), image[:, :, ::-1])


def test_intensity_profiles_keep_the_background_and_differ_in_strength():
    rng = np.random.default_rng(11)
    batch = np.zeros((64, 16, 16, 3), np.float32)
    batch[:, 4:12, 4:12] = rng.uniform(0.2, 0.9, (64, 8, 8, 3))
    changes = {}
    for name, jitter in (("standard", STANDARD), ("strong", STRONG)):
        out = jitter_intensity(batch, np.random.default_rng(2), jitter)
        # The background stays exactly black and nothing goes below 0.
        np.testing.assert_array_equal(out[:, :4], 0.0)
        assert out.min() >= 0.0
        changes[name] = np.abs(out - batch)[:, 4:12, 4:12].mean()
    # The strong profile moves signal pixels further; only it adds noise, so only it makes two
    # equal pixels of one slice and channel differ.
    assert changes["strong"] > 1.5 * changes["standard"] > 0
    flat = np.full((4, 16, 16, 3), 0.5, np.float32)
    assert np.ptp(jitter_intensity(flat, np.random.default_rng(3), STANDARD)[0, ..., 0]) < 1e-6
    assert np.ptp(jitter_intensity(flat, np.random.default_rng(3), STRONG)[0, ..., 0]) > 0.01


def test_augmentation_moves_image_and_mask_together(pack):
    case = read_pack(pack, [CASES[0]])[0]
    tumor = case.masks.reshape(len(case.masks), -1).any(axis=1)
    masks = case.masks[tumor][..., None].astype(np.float32)
    # An image whose every channel is the mask: after augmentation its bright footprint
    # must still be where the augmented mask is.
    images = np.repeat(masks, 3, axis=-1)
    out_images, out_masks = augment_pair(images, masks, np.random.default_rng(5))
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert set(np.unique(out_masks)) <= {0.0, 1.0}
    footprint = out_images[..., 1] > 0.5
    overlap = (footprint & (out_masks[..., 0] > 0)).sum() / (
        footprint | (out_masks[..., 0] > 0)
    ).sum()
    assert overlap > 0.9
    # The geometry really changed something (not an identity pipeline).
    assert np.abs(out_masks - masks).sum() > 0
    transforms = random_affine(500, 128, np.random.default_rng(0))
    scale = np.hypot(transforms[:, 0], transforms[:, 3])
    assert scale.min() >= 1 / 1.1 - 1e-6 and scale.max() <= 1 / 0.9 + 1e-6


def test_short_training_runs_resume_and_score_out_of_fold(pack, tmp_path, capsys):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [CASES[0]], "val": [CASES[1]], "test": []}))
    seg_dir, cls_dir = tmp_path / "segmenter", tmp_path / "classifier"
    common = ["--pack", str(pack), "--split-file", str(split), "--batch-size", "8"]
    assert (
        train.main(["--model", "segmenter", *common, "--epochs", "1", "--run-dir", str(seg_dir)])
        == 0
    )
    segmenter = keras.models.load_model(seg_dir / "best.keras", compile=False)
    assert segmenter.output_shape == (None, 128, 128, 1)
    assert json.loads((seg_dir / "cases.json").read_text()) == {
        "train": [CASES[0]],
        "validation": [CASES[1]],
    }
    # Without validation patients only the fixed cosine schedule is allowed.
    with pytest.raises(SystemExit, match="cosine"):
        train.main(["--model", "classifier", *common, "--train-on", "train+val", "--epochs", "1"])
    cls_args = [
        "--model", "classifier", *common, "--train-on", "train+val", "--schedule", "cosine",
        "--init-encoder", str(seg_dir / "best.keras"), "--run-dir", str(cls_dir),
    ]  # fmt: skip
    assert train.main([*cls_args, "--epochs", "2"]) == 0
    epochs = [line.split(",")[0] for line in (cls_dir / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1"]
    # A finished run leaves no backup behind (only an interrupted one resumes).
    assert not (cls_dir / "backup").exists()
    # Fine-tuning the trained classifier at another input size starts from its weights.
    fine_dir = tmp_path / "fine"
    fine_args = [
        "--model", "classifier", *common, "--train-on", "train+val", "--schedule", "cosine",
        "--init-weights", str(cls_dir / "best.keras"), "--input-size", "64",
        "--epochs", "1", "--run-dir", str(fine_dir),
    ]  # fmt: skip
    assert train.main(fine_args) == 0
    fine = keras.models.load_model(fine_dir / "best.keras", compile=False)
    assert fine.input_shape == (None, 64, 64, 3)

    rows = crossval.predict_fold(pack, [CASES[1]], tmp_path, "uint8/255")
    assert len(rows) == 24 and {r["case"] for r in rows} == {CASES[1]}
    assert all(0.0 <= r["probability"] <= 1.0 for r in rows)
    assert sum(r["label"] for r in rows) == 11
    assert all(r["intersection"] <= min(r["predicted_px"], r["truth_px"]) for r in rows)
    assert {r["slice_px"] for r in rows} == {128 * 128}
    report = crossval.summarize(rows)
    assert report["slices"] == 24 and 0.05 <= report["threshold"] <= 0.95
    # A further segmenter run beside the first (here the same weights told to take slice-p99
    # input) makes an ensemble: the two maps are averaged before the 0.5 threshold.
    member = tmp_path / "segmenter_p99"
    shutil.copytree(seg_dir, member)
    member_args = json.loads((member / "args.json").read_text()) | {"scaling": "slice-p99"}
    (member / "args.json").write_text(json.dumps(member_args))
    assert crossval.segmenter_runs(tmp_path) == [seg_dir, member]
    capsys.readouterr()
    both = crossval.predict_fold(pack, [CASES[1]], tmp_path, "uint8/255")
    assert "segmenter + segmenter_p99" in capsys.readouterr().out  # names the members it averages
    data = read_pack(pack, [CASES[1]])[0]
    maps = [
        crossval._predict(segmenter, prepare_images(data.images, 128, scaling))[..., 0]
        for scaling in ("uint8/255", "slice-p99")
    ]
    expected = (maps[0] + maps[1]) / 2 >= 0.5
    assert [r["predicted_px"] for r in both] == [int(m.sum()) for m in expected]
    averaged = [float(((a + b) / 2).max()) for a, b in zip(*maps, strict=True)]
    assert [r["map_max"] for r in both] == pytest.approx(averaged, abs=1e-6)
    # --segmenter-tta horizontal_flip: each member's map also averaged with its mirror's.
    mirrored = crossval.predict_fold(pack, [CASES[1]], tmp_path, "uint8/255", segmenter_flip=True)
    flipped = [
        crossval._predict(segmenter, prepare_images(data.images, 128, scaling)[:, :, ::-1])[
            :, :, ::-1, 0
        ]
        for scaling in ("uint8/255", "slice-p99")
    ]
    expected = ((maps[0] + flipped[0]) / 2 + (maps[1] + flipped[1]) / 2) / 2
    assert [r["map_max"] for r in mirrored] == pytest.approx(
        [float(m.max()) for m in expected], abs=1e-5
    )
    assert [r["probability"] for r in mirrored] == [r["probability"] for r in rows]
    assert [r["probability"] for r in both] == [r["probability"] for r in rows]
    by_size = report["at_0.5_volume_rule"]["sensitivity_by_tumor_size"]
    assert sum(size["tumor_slices"] for size in by_size) == 11
    assert 0.0 <= report["at_youden"]["dice_per_volume_mean"] <= 1.0


def test_a_model_restarts_from_trained_weights_at_another_input_size(tmp_path):
    resunet = modeling.build_resunet(128)
    classifier = modeling.build_encoder_classifier(resunet)
    rng = np.random.default_rng(3)
    classifier.set_weights([rng.normal(size=w.shape) for w in classifier.get_weights()])
    classifier.save(tmp_path / "classifier.keras")
    resunet.save(tmp_path / "segmenter.keras")

    same = train.build("classifier", init_weights=tmp_path / "classifier.keras")
    larger = train.build("classifier", init_weights=tmp_path / "classifier.keras", input_size=192)
    assert same.input_shape == (None, 128, 128, 3)
    assert larger.input_shape == (None, 192, 192, 3)
    for model in (same, larger):
        for got, want in zip(model.get_weights(), classifier.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    batch = rng.random((2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(same.predict(batch, verbose=0), classifier.predict(batch, verbose=0))
    # A classifier from the segmenter's encoder at another size keeps the encoder's weights.
    encoder = train.build("classifier", init_encoder=tmp_path / "segmenter.keras", input_size=64)
    assert encoder.input_shape == (None, 64, 64, 3)
    np.testing.assert_array_equal(
        encoder.get_layer("stem_conv").get_weights()[0],
        resunet.get_layer("stem_conv").get_weights()[0],
    )
    # Weights of the other kind of model are refused with a message, not a traceback.
    with pytest.raises(SystemExit, match="do not fit a classifier"):
        train.build("classifier", init_weights=tmp_path / "segmenter.keras")
    with pytest.raises(SystemExit, match="cannot load the starting model"):
        train.build("classifier", init_weights=tmp_path / "missing.keras")


def test_small_tumor_sections_can_weigh_more_in_the_classifier_loss(pack, tmp_path):
    # 1.5 % of a 128-px slice is 245.76 pixels: 245 is small, 246 is not.
    masks = np.zeros((5, 128, 128, 1), np.uint8)
    for row, pixels in zip(masks[1:], (1, 245, 246, 4000), strict=True):
        row.reshape(-1)[:pixels] = 255
    weights = train.small_tumor_weights(masks, 3.0)
    np.testing.assert_array_equal(weights, [1.0, 3.0, 3.0, 1.0, 1.0])

    images = np.zeros((5, 16, 16, 3), np.float32)
    labels = (masks.reshape(5, -1).max(axis=1) > 0).astype(np.float32)[:, None]
    batches = train.ClassifierBatches(images, labels, 5, seed=0, weights=weights)
    _, got_labels, got_weights = batches[0]
    # Whatever the shuffled order, each slice keeps its own label and weight.
    assert sorted(zip(got_labels[:, 0], got_weights, strict=True)) == [
        (0.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 3.0), (1.0, 3.0)
    ]  # fmt: skip
    assert len(train.ClassifierBatches(images, labels, 5, seed=0)[0]) == 2

    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": list(CASES), "val": [], "test": []}))
    run_dir = tmp_path / "weighted"
    args = [
        "--model", "classifier", "--pack", str(pack), "--split-file", str(split),
        "--train-on", "train+val", "--schedule", "cosine", "--epochs", "1", "--batch-size", "8",
        "--input-size", "64", "--run-dir", str(run_dir),
    ]  # fmt: skip
    assert train.main([*args, "--small-tumor-weight", "3"]) == 0
    assert json.loads((run_dir / "args.json").read_text())["small_tumor_weight"] == "3.0"
    assert len((run_dir / "log.csv").read_text().splitlines()) == 2
    for bad in ("0", "-2", "nan", "inf"):
        with pytest.raises(SystemExit, match="must be a finite positive number"):
            train.main([*args, "--small-tumor-weight", bad])
    segmenter_args = [a if a != "classifier" else "segmenter" for a in args]
    with pytest.raises(SystemExit, match="classifier only"):
        train.main([*segmenter_args, "--small-tumor-weight", "3"])


class _ShapeRecorder:
    """A real Keras model that also records the input shapes ``predict`` was given."""

    def __init__(self, model):
        self.model, self.shapes = model, set()

    def predict(self, batch, **kwargs):
        self.shapes.add(batch.shape)
        return self.model.predict(batch, **kwargs)


def test_out_of_fold_predictions_keep_one_input_shape_and_match_keras():
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    recorder = _ShapeRecorder(keras.Model(inputs, outputs))
    rng = np.random.default_rng(0)
    for n in (1, 5, 16, 17):
        batch = rng.random((n, 8, 8, 3), dtype=np.float32)
        got = crossval._predict(recorder, batch, batch_size=16)
        expected = recorder.model.predict(batch, verbose=0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert {shape[0] % 16 for shape in recorder.shapes} == {0}  # whole batches only


def test_pipeline_dice_gates_on_the_classifier():
    keys = ("case", "slice", "label", "probability", "intersection", "predicted_px", "truth_px")
    rows = [
        dict(zip(keys, values, strict=True))
        for values in (
            ("a", 1, True, 0.2, 5, 5, 10),
            ("a", 0, True, 0.9, 8, 10, 10),
            ("b", 0, False, 0.7, 0, 4, 0),
            ("c", 0, True, 0.6, 3, 3, 3),
        )
    ]
    # Case a at 0.5: the second slice is called negative, so its mask is dropped:
    # Dice = 2*8 / (10 + 20). Case b has no tumor and does not count; case c is perfect.
    result = crossval.pipeline_dice(rows, 0.5)
    assert result["cases_with_tumor"] == 2
    assert result["dice_per_volume_mean"] == pytest.approx((16 / 30 + 1.0) / 2)
    everything = crossval.pipeline_dice(rows, 0.1)
    assert everything["dice_per_volume_mean"] == pytest.approx((26 / 35 + 1.0) / 2)
    # The volume rule: slice 1 of case a (0.2) continues slice 0 (0.9), so its mask counts.
    assert crossval.pipeline_dice(rows, 0.5, 0.15) == everything
    assert crossval.pipeline_dice(rows, 0.5, 0.25) == result
    assert crossval.calls_for(rows, 0.5, 0.15) == [True, True, True, True]
    summary = crossval.summarize(rows)
    assert summary["extend_threshold"] == 0.2
    assert summary["at_0.5_volume_rule"]["confusion_matrix"] == {"tp": 3, "fn": 0, "fp": 1, "tn": 0}
    assert summary["at_0.5"]["confusion_matrix"] == {"tp": 2, "fn": 1, "fp": 1, "tn": 0}


def test_summary_counts_found_tumor_slices_by_tumor_size():
    keys = ("case", "slice", "label", "probability", "intersection", "predicted_px", "truth_px")
    rows = [
        {**dict(zip(keys, values, strict=True)), "slice_px": 1000}
        for values in (
            ("a", 0, True, 0.3, 0, 0, 2),  # 0.2 % of the slice, missed
            ("a", 1, True, 0.9, 9, 9, 10),  # 1 %, found
            ("a", 2, True, 0.8, 0, 0, 0),  # tumor lost in the resize: smallest bin, found
            ("a", 3, False, 0.1, 0, 0, 0),
            ("b", 0, True, 0.95, 90, 90, 100),  # 10 %, found
        )
    ]
    by_size = crossval.summarize(rows)["at_0.5"]["sensitivity_by_tumor_size"]
    assert [(s["area_percent"], s["tumor_slices"], s["called"]) for s in by_size] == [
        ("<0.5", 2, 1),
        ("0.5-1.5", 1, 1),
        ("1.5-5", 0, 0),
        (">=5", 1, 1),
    ]
    # Rows from before ``slice_px`` was recorded are summarized without the breakdown.
    old = [{key: value for key, value in row.items() if key != "slice_px"} for row in rows]
    assert "sensitivity_by_tumor_size" not in crossval.summarize(old)["at_0.5"]


def _rows(*cases):
    keys = ("case", "slice", "label", "probability", "intersection", "predicted_px", "truth_px")
    return [
        dict(zip(keys, (case, 0, label, p, 1, 1, int(label)), strict=True))
        for case, label, p in cases
    ]


def test_summary_keeps_0_5_unless_youden_scores_better_out_of_fold():
    # A tumor slice at 0.3 is missed at 0.5 but found at Youden's threshold (0.1 < t <= 0.3).
    low = crossval.summarize(_rows(("a", True, 0.3), ("b", False, 0.1)))
    assert 0.1 < low["youden_threshold"] <= 0.3
    assert low["at_0.5_volume_rule"]["accuracy"] == 0.5
    assert low["at_youden_volume_rule"]["accuracy"] == 1.0
    assert low["threshold"] == low["youden_threshold"]
    # Both thresholds separate these perfectly: the tie keeps 0.5, fixed before training.
    tie = crossval.summarize(_rows(("a", True, 0.9), ("b", False, 0.1)))
    assert tie["youden_threshold"] != 0.5
    assert tie["threshold"] == 0.5


def test_recipe_cross_validates_and_exports_a_final_pair(pack, lgg_dir, tmp_path, monkeypatch):
    """training/recipe.sh for real, at one epoch: two patient folds plus the final pair."""
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [CASES[0]], "val": [CASES[1]], "test": []}))
    env = os.environ | {
        "PYTHON": sys.executable,
        "SPLIT": str(split),
        "FOLDS": "2",
        "SEG_EPOCHS": "1",
        "CLS_EPOCHS": "1",
        "BATCH": "8",
    }
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "runs"
    done = subprocess.run(
        ["bash", "training/recipe.sh", str(pack), str(out), "uint8/255"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    scheme = out / "uint8-255"
    summary = json.loads((scheme / "crossval.json").read_text())
    # Every slice of both patients was scored by the fold that did not train on it.
    assert summary["cases"] == 2 and summary["slices"] == 44
    held_out = [
        json.loads((scheme / f"fold{k}" / "classifier" / "cases.json").read_text())["validation"]
        for k in (0, 1)
    ]
    assert sorted(sum(held_out, [])) == sorted(CASES)
    final_cases = json.loads((scheme / "final" / "segmenter" / "cases.json").read_text())
    assert sorted(final_cases["train"]) == sorted(CASES) and final_cases["validation"] == []
    for model in ("segmenter", "classifier"):
        assert keras.models.load_model(scheme / f"{model}.keras", compile=False).built

    # Export the final pair, the classifier with a cross-validation folder of its own.
    own = tmp_path / "classifier-cv"
    shutil.copytree(scheme, own, ignore=shutil.ignore_patterns("final", "*.keras"))
    shutil.rmtree(own / "fold1")  # only one of its two folds was run
    chosen = summary | {"threshold": 0.42, "threshold_chosen_by": "a test's own choice"}
    (own / "crossval.json").write_text(json.dumps(chosen))
    export_split = tmp_path / "export-split.json"
    export_split.write_text(json.dumps({"train": [CASES[0]], "val": [], "test": [CASES[1]]}))
    models = tmp_path / "models"
    args = ["--data-dir", str(lgg_dir), "--runs-dir", str(scheme / "final")]
    args += ["--models-dir", str(models), "--split-file", str(export_split)]
    args += ["--crossval", str(scheme), "--classifier-crossval", str(own)]
    # A folder without the layout, or without the split's test patients, changes nothing.
    with pytest.raises(SystemExit, match="does not look like the Kaggle"):
        export.main([*args[:1], str(tmp_path), *args[2:]])
    other_split = tmp_path / "other-split.json"
    other_split.write_text(json.dumps({"train": [], "val": [], "test": ["TCGA_XX_0000_20000101"]}))
    with pytest.raises(SystemExit, match="none of the split's test patients"):
        export.main([*args, "--split-file", str(other_split)])
    assert not models.exists()
    # Weights an earlier export left for an ensemble member go; other files stay.
    models.mkdir()
    # The app's arithmetic setting does not reach the recorded metrics: export measures them
    # in float32, as the model card states.
    monkeypatch.setenv("BRAINLOC_INFERENCE_PRECISION", "bfloat16")
    (models / "segmenter_old.keras").write_bytes(b"an earlier export's member")
    (models / "notes.txt").write_text("the clinic's own notes")
    assert export.main(args) == 0
    assert not (models / "segmenter_old.keras").exists()
    assert (models / "notes.txt").read_text() == "the clinic's own notes"
    pipeline = Pipeline.load(models)
    assert pipeline.classifier_spec.threshold == 0.42
    assert pipeline.classifier_spec.extend_threshold == 0.2
    assert pipeline.classifier_spec.scaling == pipeline.segmenter_spec.scaling == "uint8/255"
    cls_meta = json.loads((models / "classifier.json").read_text())
    seg_meta = json.loads((models / "segmenter.json").read_text())
    assert cls_meta["training"]["cross_validation"]["out_of_fold"]["threshold"] == 0.42
    assert "a test's own choice" in cls_meta["decision"]["chosen_on"]
    assert "out_of_fold" not in seg_meta["training"]["cross_validation"]
    assert len(seg_meta["training"]["cross_validation"]["folds"]) == 2
    assert [f["fold"] for f in cls_meta["training"]["cross_validation"]["folds"]] == [0]
    assert cls_meta["training"]["cross_validation"]["split_folds"] == 2
    cards = {card.stem: card.training_summary for card in load_cards(models)[0]}
    assert "1 of 2 folds of patient cross-validation" in cards["classifier"]
    assert "2-fold patient cross-validation" in cards["segmenter"]
    test = cls_meta["metrics"]["test"]
    assert test["patients"] == 1 and test["slices"] == 24 and 0.0 <= test["accuracy"] <= 1.0
    assert test["precision"] == seg_meta["metrics"]["test"]["precision"] == "float32"
    assert 0.0 <= seg_meta["metrics"]["test"]["dice_per_volume_mean"] <= 1.0
    assert "ensemble" not in seg_meta and len(Pipeline.load(models).segmenters) == 1
    # No out-of-fold block was measured at a hand-set 0.42, so no out-of-fold Dice is claimed.
    assert "out_of_fold" not in seg_meta["metrics"]

    # A further segmenter run in the runs folder is shipped as an ensemble member (here the
    # same weights told to take slice-p99 input: the export, not a second model, is tested).
    member = scheme / "final" / "segmenter_p99"
    shutil.copytree(scheme / "final" / "segmenter", member)
    member_args = json.loads((member / "args.json").read_text()) | {"scaling": "slice-p99"}
    # As a run recorded on another copy of the repository names the committed split.
    member_args["split_file"] = str(SPLITS_FILE)
    (member / "args.json").write_text(json.dumps(member_args))
    # This time the classifier threshold is the one the cross-validation measured at.
    youden = summary["at_youden_volume_rule"]
    (own / "crossval.json").write_text(json.dumps(summary | {"threshold": youden["threshold"]}))
    ensemble_models = tmp_path / "ensemble-models"
    assert export.main([*args[:5], str(ensemble_models), *args[6:]]) == 0
    ensemble_meta = json.loads((ensemble_models / "segmenter.json").read_text())
    (entry,) = ensemble_meta["ensemble"]["members"]
    assert entry["weights"] == "segmenter_p99.keras"
    assert entry["input"] == {"shape": [128, 128, 3], "scaling": "slice-p99"}
    assert entry["training"]["arguments"]["scaling"] == "slice-p99"
    assert entry["training"]["split_file"] == "training/splits.json"
    assert ensemble_meta["metrics"]["out_of_fold"] == {
        "cases": 2,
        "slices": 44,
        "dice_per_volume_mean": youden["dice_per_volume_mean"],
        "dice_per_volume_median": youden["dice_per_volume_median"],
        "note": ensemble_meta["metrics"]["out_of_fold"]["note"],
    }
    assert "an ensemble of 2" in ensemble_meta["architecture"]
    pipeline = Pipeline.load(ensemble_models)
    assert [m.scaling for m in pipeline.segmenter_spec.members] == ["uint8/255", "slice-p99"]
    image = load_case(lgg_dir, CASES[1]).images[12]
    alone = Pipeline.load(models).segment(image)[0]
    assert pipeline.segment(image)[0].shape == alone.shape == image.shape[:2]
