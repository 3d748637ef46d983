"""Train the classifier or the segmenter on the committed patient split.

    python -m training.train --model classifier --data-dir DIR [--epochs 40]
    python -m training.train --model segmenter  --data-dir DIR [--epochs 60]

Each run writes into ``--run-dir`` (default ``training/runs/<model>``): its own
arguments (``args.json``), a CSV log, the best checkpoint by validation loss
(``best.keras``) and a backup that lets an interrupted run resume where it
stopped (run the same command again). Weights are copied to ``models/`` by
``training.export`` after evaluation, not here.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from brainloc.modeling import (
    FocalTverskyLoss,
    build_encoder_classifier,
    build_resnet_classifier,
    build_resunet,
    dice_coefficient,
)
from brainloc.preprocessing import prepare_images, prepare_masks
from training.augment import augment_image, augment_pair
from training.data import load_cases, read_split, stack

log = logging.getLogger("training.train")

#: Input size of a model built from scratch. The metadata records each shipped model's
#: size, read from the model itself, and inference reads the metadata.
INPUT_SIZE = {"classifier": 256, "segmenter": 128}


def classifier_datasets(train, val, size: int, batch_size: int, seed: int):
    """tf.data pipelines of (image, has_tumor) for the classifier."""
    (x_train, m_train), (x_val, m_val) = stack(train), stack(val)
    y_train = m_train.reshape(len(m_train), -1).any(axis=1).astype(np.float32)[:, None]
    y_val = m_val.reshape(len(m_val), -1).any(axis=1).astype(np.float32)[:, None]
    x_train, x_val = prepare_images(x_train, size), prepare_images(x_val, size)
    log.info(
        "classifier: %d train slices (%.0f%% tumor), %d val",
        len(x_train),
        100 * y_train.mean(),
        len(x_val),
    )
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(augment_image, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch_size)
    return train_ds, val_ds, None


def segmenter_datasets(
    train, val, size: int, batch_size: int, seed: int, negative_share: float = 0.3
):
    """tf.data pipelines of (image, mask) for the segmenter.

    Training samples tumor slices and tumor-free slices at a fixed ratio, so the
    network sees enough lesions yet learns to return an empty mask on a slice the
    classifier wrongly passes on. Validation uses every slice of the val patients.
    """
    (x_train, m_train), (x_val, m_val) = stack(train), stack(val)
    x_train, x_val = prepare_images(x_train, size), prepare_images(x_val, size)
    y_train, y_val = prepare_masks(m_train, size), prepare_masks(m_val, size)
    positive = y_train.reshape(len(y_train), -1).max(axis=1) > 0
    pos = tf.data.Dataset.from_tensor_slices((x_train[positive], y_train[positive]))
    neg = tf.data.Dataset.from_tensor_slices((x_train[~positive], y_train[~positive]))
    pos = pos.shuffle(int(positive.sum()), seed=seed).repeat()
    neg = neg.shuffle(int((~positive).sum()), seed=seed + 1).repeat()
    train_ds = (
        tf.data.Dataset.sample_from_datasets(
            [pos, neg], weights=[1 - negative_share, negative_share], seed=seed
        )
        .batch(batch_size)
        .map(augment_pair, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )
    steps = int(np.ceil(positive.sum() / (1 - negative_share) / batch_size))
    log.info(
        "segmenter: %d tumor + %d clean train slices, %d steps/epoch, %d val",
        positive.sum(),
        (~positive).sum(),
        steps,
        len(x_val),
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch_size)
    return train_ds, val_ds, steps


def build(model_name: str, learning_rate: float, init_encoder: Path | None = None) -> keras.Model:
    """The model compiled with its loss and metrics.

    With ``init_encoder`` (a trained segmenter ``.keras`` file) the classifier starts
    from that ResUNet's residual encoder (see ``build_encoder_classifier``).
    """
    optimizer = keras.optimizers.Adam(learning_rate)
    if model_name == "classifier":
        if init_encoder:
            segmenter = keras.models.load_model(init_encoder, compile=False)
            model = build_encoder_classifier(segmenter)
        else:
            model = build_resnet_classifier(INPUT_SIZE["classifier"])
        model.compile(
            optimizer=optimizer,
            loss="binary_crossentropy",
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        )
    else:
        model = build_resunet(INPUT_SIZE["segmenter"])
        model.compile(optimizer=optimizer, loss=FocalTverskyLoss(), metrics=[dice_coefficient])
    return model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("classifier", "segmenter"), required=True)
    parser.add_argument(
        "--data-dir", required=True, type=Path, help="Kaggle lgg-mri-segmentation layout"
    )
    parser.add_argument("--run-dir", type=Path, help="default: training/runs/<model>")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=8, help="early-stopping patience in epochs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--init-encoder",
        type=Path,
        help="classifier only: start from this trained segmenter's encoder (.keras)",
    )
    parser.add_argument(
        "--limit-cases",
        type=int,
        default=0,
        help="use only the first N train/val cases (smoke tests)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    keras.utils.set_random_seed(args.seed)
    run_dir = args.run_dir or Path(__file__).resolve().parent / "runs" / args.model
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(
        json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1)
    )

    split = read_split()
    train_cases, val_cases = split["train"], split["val"]
    if args.limit_cases:
        train_cases, val_cases = train_cases[: args.limit_cases], val_cases[: args.limit_cases]
    train, val = load_cases(args.data_dir, train_cases), load_cases(args.data_dir, val_cases)
    model = build(args.model, args.learning_rate, args.init_encoder)
    size = int(model.input_shape[1])
    make = classifier_datasets if args.model == "classifier" else segmenter_datasets
    train_ds, val_ds, steps = make(train, val, size, args.batch_size, args.seed)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.keras"), monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(2, args.patience // 3)
        ),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
    ]
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=args.epochs,
        steps_per_epoch=steps,
        callbacks=callbacks,
        verbose=2,
    )
    log.info("best checkpoint: %s", run_dir / "best.keras")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
