"""Train the classifier or the segmenter on the committed patient split.

    python -m training.train --model segmenter  --data-dir DIR [--epochs 60]
    python -m training.train --model classifier --data-dir DIR [--epochs 40] \
        [--init-encoder training/runs/segmenter/best.keras]

Data: ``--data-dir`` (the Kaggle layout) or ``--pack`` (see ``training.pack``).
Patients: ``--train-on train`` (default) validates on the split's val patients;
``--train-on train+val --folds 4 --fold K`` trains on three quarters of the
train+val patients and validates on the fourth (cross-validation); ``--train-on
train+val`` alone trains on all of them (the final model of a recipe whose
cross-validation has already been run).

Starting points: a fresh model (the classifier a compact ResNet, the segmenter a ResUNet),
``--init-encoder`` (classifier: the encoder of a trained segmenter) or ``--init-weights`` (a
trained model of the same kind, to fine-tune it). ``--input-size`` rebuilds the model at
another square input size with the same weights, e.g. to fine-tune a 128-px classifier at
256 px (tried; see the model card).

Small tumors: ``--small-tumor-weight W`` (classifier) weights the loss of tumor sections
covering under 1.5 % of the slice W times, the sections missed most often out of fold.

Schedules: ``plateau`` halves the learning rate when validation loss stalls and
stops early (needs validation patients); ``cosine`` runs exactly ``--epochs``
with a cosine-decaying learning rate, so the recipe that cross-validation
measured can be repeated on all patients without peeking at any of them.

Each run writes into ``--run-dir`` (default ``training/runs/<model>``): its own
arguments (``args.json``), a CSV log, ``best.keras`` (plateau: the best by
validation loss; cosine: the last epoch) and a backup that lets an interrupted
run resume where it stopped (run the same command again). The resumed epochs draw the
batches, augmentation and dropout the uninterrupted run would have, and the checkpoint,
learning-rate and early-stopping callbacks keep their best loss and counters
(:class:`TrainingMemory`), so the run ends as if never interrupted; log rows of the epochs
it repeats are dropped, so ``log.csv`` holds each epoch once. A folder holding a finished run
(a log and no backup) is refused (exit 2): ``--fresh`` deletes its log, ``best.keras`` and any
backup and starts over. Weights are copied to ``models/`` by ``training.export`` after
evaluation, not here.

The script uses Keras only (no TensorFlow calls), so it runs on any Keras
backend: ``KERAS_BACKEND=jax`` on a GPU machine trains the same graphs.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import shutil
import sys
from pathlib import Path

import keras
import numpy as np

from brainloc.modeling import (
    FocalTverskyLoss,
    build_encoder_classifier,
    build_resnet_classifier,
    build_resunet,
    dice_coefficient,
)
from brainloc.preprocessing import (
    SCALING_SCHEMES,
    SCALING_UINT8_UNIT,
    prepare_images,
    prepare_masks,
)
from training.augment import JITTER_PROFILES, STANDARD, augment_images, augment_pair
from training.data import (
    SPLITS_FILE,
    held_out_fold,
    load_cases,
    read_split,
    split_file_label,
    stack,
)
from training.metrics import TUMOR_SIZE_EDGES

log = logging.getLogger("training.train")

#: Input size of a model built from scratch. The metadata records each shipped model's
#: size, read from the model itself, and inference reads the metadata.
INPUT_SIZE = {"classifier": 256, "segmenter": 128}


class ClassifierBatches(keras.utils.PyDataset):
    """Shuffled, augmented (image, has_tumor) batches; a new order every epoch.

    With ``weights`` (one loss weight per slice) each batch is (image, has_tumor, weight).
    """

    def __init__(
        self, images, labels, batch_size: int, seed: int, jitter=STANDARD, weights=None, epoch=0
    ):
        super().__init__()
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.jitter, self.weights = jitter, weights
        # ``epoch``: the first epoch these batches serve (a resumed run's start), so its order
        # and augmentation are those an uninterrupted run would draw at that epoch.
        self.epoch = epoch
        self.order = np.random.default_rng((seed, epoch)).permutation(len(images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        rng = np.random.default_rng((self.seed, self.epoch, index))
        images = augment_images(self.images[rows], rng, self.jitter)
        if self.weights is None:
            return images, self.labels[rows]
        return images, self.labels[rows], self.weights[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))


class SegmenterBatches(keras.utils.PyDataset):
    """Augmented (image, mask) batches drawing tumor and clean slices at a fixed ratio.

    The network sees enough lesions yet learns to return an empty mask on a slice
    the classifier wrongly passes on. ``epoch`` is the first epoch served (see
    :class:`ClassifierBatches`).
    """

    def __init__(
        self,
        images,
        masks,
        batch_size: int,
        seed: int,
        negative_share=0.3,
        jitter=STANDARD,
        epoch=0,
    ):
        super().__init__()
        self.images, self.masks, self.batch_size, self.seed = images, masks, batch_size, seed
        self.jitter = jitter
        positive = masks.reshape(len(masks), -1).max(axis=1) > 0
        self.positive, self.negative = np.flatnonzero(positive), np.flatnonzero(~positive)
        self.negative_share = negative_share
        self.steps = math.ceil(len(self.positive) / (1 - negative_share) / batch_size)
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        clean = rng.random(self.batch_size) < self.negative_share
        rows = np.where(
            clean,
            rng.choice(self.negative, self.batch_size),
            rng.choice(self.positive, self.batch_size),
        )
        return augment_pair(self.images[rows], self.masks[rows], rng, self.jitter)

    def on_epoch_end(self) -> None:
        self.epoch += 1


#: What each watching callback remembers between epochs (Keras resets it when training begins).
_CALLBACK_MEMORY = {
    keras.callbacks.ModelCheckpoint: ("best",),
    keras.callbacks.ReduceLROnPlateau: ("best", "wait", "cooldown_counter"),
    keras.callbacks.EarlyStopping: ("best", "wait", "best_epoch"),
}


def logged_epochs(log_file: Path) -> list[int]:
    """The epochs a run's ``log.csv`` holds rows for (none without the file)."""
    try:
        with log_file.open(newline="") as rows:
            return [int(row["epoch"]) for row in csv.DictReader(rows)]
    except FileNotFoundError:
        return []


def drop_logged_epochs(log_file: Path, start_epoch: int) -> None:
    """Delete the rows of epochs ``start_epoch`` and after from ``log_file``: a run interrupted
    after logging an epoch but before backing it up repeats that epoch when resumed."""
    if not log_file.exists():
        return
    with log_file.open(newline="") as rows:
        reader = csv.DictReader(rows)
        fields, kept = reader.fieldnames, [r for r in reader if int(r["epoch"]) < start_epoch]
    if fields is None:
        return
    with log_file.open("w", newline="") as out:
        writer = csv.DictWriter(out, fields)
        writer.writeheader()
        writer.writerows(kept)


def prepare_run_dir(run_dir: Path, fresh: bool) -> None:
    """Refuse (exit 2) a folder holding a finished run unless ``fresh``, which clears it."""
    log_file, backup = run_dir / "log.csv", run_dir / "backup"
    if fresh:
        for old in (log_file, run_dir / "best.keras"):
            old.unlink(missing_ok=True)
        shutil.rmtree(backup, ignore_errors=True)
        return
    if not backup.exists() and (epochs := logged_epochs(log_file)):
        print(
            f"error: {run_dir} holds a finished run ({len(epochs)} epochs in log.csv, no backup "
            "to resume from); give another --run-dir, or --fresh to delete it and start over",
            file=sys.stderr,
        )
        raise SystemExit(2)


def backed_up_epoch(backup_dir: Path) -> int:
    """The epoch an interrupted run resumes at: the number of epochs its backup holds
    (``BackupAndRestore``'s metadata), 0 without a backup."""
    try:
        return int(json.loads((backup_dir / "training_metadata.json").read_text())["epoch"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: cannot read the backup in {backup_dir}: {exc}") from None


def _plain(value):
    """``value`` (None, a count or a loss, maybe a NumPy scalar) as JSON can hold it."""
    if value is None or isinstance(value, int | np.integer):
        return None if value is None else int(value)
    return float(value)


class TrainingMemory(keras.callbacks.Callback):
    """Carries across an interruption what Keras' ``BackupAndRestore`` does not: what the
    checkpoint, learning-rate and early-stopping callbacks remember (best validation loss,
    epochs waited) and the state of the layers' random streams (dropout).

    The backup keeps the weights and the optimizer only: a resumed run would otherwise save
    its first epoch as ``best.keras`` however bad, wait afresh before lowering the learning
    rate or stopping, and replay the first epoch's dropout. After each epoch this state is
    written to ``path`` (in the backup folder, so it goes with it), keyed by the number of
    epochs done; when training begins at ``start_epoch`` > 0 the state saved at that epoch is
    put back. Put it after the callbacks it watches and before ``BackupAndRestore``, whose
    metadata then never names an epoch this file lacks.
    """

    def __init__(self, path: Path, watched: list, start_epoch: int = 0):
        super().__init__()
        self.path, self.start_epoch = path, start_epoch
        self.watched = [c for c in watched if type(c) in _CALLBACK_MEMORY]

    def _streams(self) -> list:
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def on_train_begin(self, logs=None):
        if not self.start_epoch:
            return
        saved = self._read().get(str(self.start_epoch))
        if saved is None:
            log.warning(
                "no training state saved at epoch %d: callbacks start afresh", self.start_epoch
            )
            return
        for callback, state in zip(self.watched, saved["callbacks"], strict=True):
            for name, value in state.items():
                setattr(callback, name, value)
        for variable, value in zip(self._streams(), saved["random"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        log.info("callbacks' state at epoch %d restored: %s", self.start_epoch, saved["callbacks"])

    def on_epoch_end(self, epoch, logs=None):
        state = {
            "callbacks": [
                {name: _plain(getattr(c, name)) for name in _CALLBACK_MEMORY[type(c)]}
                for c in self.watched
            ],
            "random": [keras.ops.convert_to_numpy(v).tolist() for v in self._streams()],
        }
        # Keep the previous epoch's too: an interruption between this write and the backup's
        # leaves the backup one epoch behind.
        kept = {k: v for k, v in self._read().items() if k == str(epoch)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".part")
        partial.write_text(json.dumps(kept | {str(epoch + 1): state}))
        partial.replace(self.path)


def _labels(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(len(masks), -1).any(axis=1).astype(np.float32)[:, None]


#: A tumor slice counts as small below this share of the slice area: the sections the
#: classifier misses most often out of fold (``training.metrics.TUMOR_SIZE_EDGES``).
SMALL_TUMOR_SHARE = TUMOR_SIZE_EDGES[1]


def small_tumor_weights(masks: np.ndarray, weight: float) -> np.ndarray:
    """One loss weight per slice: ``weight`` for a tumor covering under
    ``SMALL_TUMOR_SHARE`` of the slice, 1 for every other slice (clean ones included)."""
    share = (masks.reshape(len(masks), -1) > 0).mean(axis=1)
    small = (share > 0) & (share < SMALL_TUMOR_SHARE)
    return np.where(small, weight, 1.0).astype(np.float32)


def classifier_datasets(
    train,
    val,
    size: int,
    batch_size: int,
    seed: int,
    scaling: str,
    jitter=STANDARD,
    small_tumor_weight: float = 1.0,
    epoch: int = 0,
):
    """Training batches and validation arrays of (image, has_tumor) for the classifier.

    ``small_tumor_weight`` (1: off) weights the loss of small tumor sections; ``epoch`` is
    the epoch the batches start at (a resumed run's).
    """
    x_train, m_train = stack(train)
    x_train, y_train = prepare_images(x_train, size, scaling), _labels(m_train)
    log.info("classifier: %d train slices (%.0f%% tumor)", len(x_train), 100 * y_train.mean())
    weights = None
    if small_tumor_weight != 1.0:
        weights = small_tumor_weights(m_train, small_tumor_weight)
        log.info(
            "classifier: %d small tumor sections weighted %g",
            int((weights != 1.0).sum()),
            small_tumor_weight,
        )
    validation = None
    if val:
        x_val, m_val = stack(val)
        validation = (prepare_images(x_val, size, scaling), _labels(m_val))
        log.info("classifier: %d val slices", len(x_val))
    batches = ClassifierBatches(
        x_train, y_train, batch_size, seed, jitter=jitter, weights=weights, epoch=epoch
    )
    return batches, validation


def segmenter_datasets(
    train, val, size: int, batch_size: int, seed: int, scaling: str, jitter=STANDARD, epoch=0
):
    """Training batches and validation arrays of (image, mask) for the segmenter.

    Validation uses every slice of the validation patients; ``epoch`` is the epoch the
    batches start at (a resumed run's).
    """
    x_train, m_train = stack(train)
    batches = SegmenterBatches(
        prepare_images(x_train, size, scaling),
        prepare_masks(m_train, size),
        batch_size,
        seed,
        jitter=jitter,
        epoch=epoch,
    )
    log.info(
        "segmenter: %d tumor + %d clean train slices, %d steps/epoch",
        len(batches.positive),
        len(batches.negative),
        batches.steps,
    )
    validation = None
    if val:
        x_val, m_val = stack(val)
        validation = (prepare_images(x_val, size, scaling), prepare_masks(m_val, size))
        log.info("segmenter: %d val slices", len(x_val))
    return batches, validation


def _at_size(model: keras.Model, size: int) -> keras.Model:
    """``model`` itself, or a copy taking ``size`` square inputs with the same weights (our
    networks are convolutional up to a global pooling, so one set of weights serves any size)."""
    if int(model.input_shape[1]) == size:
        return model
    copy = keras.models.clone_model(model, input_tensors=keras.Input(shape=(size, size, 3)))
    copy.set_weights(model.get_weights())
    return copy


def build(
    model_name: str,
    init_encoder: Path | None = None,
    init_weights: Path | None = None,
    input_size: int = 0,
) -> keras.Model:
    """The model to train, not yet compiled (see :func:`compile_for_training`).

    With ``init_encoder`` (a trained segmenter ``.keras`` file) the classifier starts
    from that ResUNet's residual encoder (see ``build_encoder_classifier``). With
    ``init_weights`` (a trained model of the same kind) training continues from its
    weights, e.g. to fine-tune at another input size. ``input_size`` (0: the starting
    model's size, else ``INPUT_SIZE``) sets the square side the model takes.
    """
    start = init_weights or (init_encoder if model_name == "classifier" else None)
    if start:
        try:
            trained = keras.models.load_model(start, compile=False)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: cannot load the starting model {start}: {exc}") from None
        # A classifier gives (N, 1); a segmenter a map (N, S, S, 1).
        kind = "classifier" if len(trained.output_shape) == 2 else "segmenter"
        wanted = model_name if init_weights else "segmenter"
        if kind != wanted:
            raise SystemExit(f"error: the starting weights do not fit a {wanted} of this shape")
        resized = _at_size(trained, input_size or int(trained.input_shape[1]))
        return resized if init_weights else build_encoder_classifier(resized)
    size = input_size or INPUT_SIZE[model_name]
    if model_name == "classifier":
        return build_resnet_classifier(size)
    return build_resunet(size)


def compile_for_training(model: keras.Model, model_name: str, learning_rate) -> None:
    """Compile with Adam (``learning_rate``: a number or a Keras schedule), loss and metrics."""
    optimizer = keras.optimizers.Adam(learning_rate)
    if model_name == "classifier":
        model.compile(
            optimizer=optimizer,
            loss="binary_crossentropy",
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
        )
    else:
        model.compile(optimizer=optimizer, loss=FocalTverskyLoss(), metrics=[dice_coefficient])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("classifier", "segmenter"), required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="Kaggle lgg-mri-segmentation layout")
    source.add_argument("--pack", type=Path, help="a training pack (python -m training.pack)")
    parser.add_argument(
        "--split-file", type=Path, default=SPLITS_FILE, help="patient split (JSON train/val/test)"
    )
    parser.add_argument("--train-on", choices=("train", "train+val"), default="train")
    parser.add_argument("--folds", type=int, default=0, help="cross-validation folds (train+val)")
    parser.add_argument("--fold", type=int, default=0, help="which fold validates (0-based)")
    parser.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau")
    parser.add_argument("--scaling", choices=SCALING_SCHEMES, default=SCALING_UINT8_UNIT)
    parser.add_argument(
        "--intensity",
        choices=tuple(JITTER_PROFILES),
        default="standard",
        help="intensity augmentation profile (training.augment)",
    )
    parser.add_argument(
        "--small-tumor-weight",
        type=float,
        default=1.0,
        help=f"classifier only: loss weight of tumor sections under {SMALL_TUMOR_SHARE * 100:g}%% "
        "of the slice (1: off)",
    )
    parser.add_argument("--run-dir", type=Path, help="default: training/runs/<model>")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over in a run folder holding a finished or interrupted run (deletes its "
        "log, best.keras and backup)",
    )
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
        "--init-weights",
        type=Path,
        help="start from this trained model of the same kind (.keras), e.g. to fine-tune it",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=0,
        help="square input side (default: the starting model's, else the model's usual size)",
    )
    parser.add_argument(
        "--limit-cases",
        type=int,
        default=0,
        help="use only the first N train/val cases (smoke tests)",
    )
    return parser.parse_args(argv)


def select_cases(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(training cases, validation cases) for the chosen patients and fold."""
    split = read_split(args.split_file)
    if args.train_on == "train":
        if args.folds:
            raise SystemExit("--folds needs --train-on train+val")
        train_cases, val_cases = split["train"], split["val"]
    else:
        pool = split["train"] + split["val"]
        if args.folds:
            if not 0 <= args.fold < args.folds:
                raise SystemExit(f"--fold must be in 0..{args.folds - 1}")
            val_cases = held_out_fold(split, args.folds, args.fold)
            held_out = set(val_cases)
            train_cases = [c for c in pool if c not in held_out]
        else:
            train_cases, val_cases = pool, []
    if args.limit_cases:
        train_cases, val_cases = train_cases[: args.limit_cases], val_cases[: args.limit_cases]
    if not val_cases and args.schedule != "cosine":
        raise SystemExit("training without validation patients needs --schedule cosine")
    return train_cases, val_cases


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.small_tumor_weight != 1.0 and args.model != "classifier":
        raise SystemExit("error: --small-tumor-weight applies to the classifier only")
    if not (math.isfinite(args.small_tumor_weight) and args.small_tumor_weight > 0):
        raise SystemExit("error: --small-tumor-weight must be a finite positive number")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    keras.utils.set_random_seed(args.seed)
    run_dir = args.run_dir or Path(__file__).resolve().parent / "runs" / args.model
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_run_dir(run_dir, args.fresh)
    recorded = {k: str(v) for k, v in vars(args).items() if k != "fresh"}
    recorded["split_file"] = split_file_label(args.split_file)
    (run_dir / "args.json").write_text(json.dumps(recorded, indent=1))
    log.info("Keras %s on the %s backend", keras.__version__, keras.backend.backend())

    train_cases, val_cases = select_cases(args)
    (run_dir / "cases.json").write_text(
        json.dumps({"train": train_cases, "validation": val_cases}, indent=1)
    )
    try:
        if args.pack:
            from training.pack import read_pack

            # One read (the pack is decompressed whole), split in the pack's own case order.
            cases = read_pack(args.pack, train_cases + val_cases)
            wanted = set(train_cases)
            train = [c for c in cases if c.case in wanted]
            val = [c for c in cases if c.case not in wanted]
        else:
            train = load_cases(args.data_dir, train_cases)
            val = load_cases(args.data_dir, val_cases)
    except (OSError, ValueError, EOFError) as exc:
        raise SystemExit(f"error: cannot read the training data: {exc}") from None

    model = build(args.model, args.init_encoder, args.init_weights, args.input_size)
    size = int(model.input_shape[1])
    jitter = JITTER_PROFILES[args.intensity]
    make, extra = segmenter_datasets, {}
    if args.model == "classifier":
        make, extra = classifier_datasets, {"small_tumor_weight": args.small_tumor_weight}
    backup = run_dir / "backup"
    start_epoch = backed_up_epoch(backup)
    if backup.exists():
        log.info("resuming the interrupted run at epoch %d", start_epoch)
        drop_logged_epochs(run_dir / "log.csv", start_epoch)
    batches, validation = make(
        train, val, size, args.batch_size, args.seed, args.scaling, jitter,
        epoch=start_epoch, **extra,
    )  # fmt: skip

    callbacks = [keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True)]
    if args.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            args.learning_rate, decay_steps=args.epochs * len(batches), alpha=0.01
        )
        callbacks.append(keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras")))
    else:
        learning_rate = args.learning_rate
        callbacks += [
            keras.callbacks.ModelCheckpoint(
                str(run_dir / "best.keras"), monitor="val_loss", save_best_only=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(2, args.patience // 3)
            ),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience),
        ]
    # Last, once every other callback has finished the epoch: the backup (weights, optimizer,
    # epoch) and, just before it, what the backup lacks (see TrainingMemory).
    callbacks += [
        TrainingMemory(backup / "memory.json", callbacks, start_epoch),
        keras.callbacks.BackupAndRestore(str(backup)),
    ]
    compile_for_training(model, args.model, learning_rate)
    model.fit(
        batches,
        validation_data=validation,
        validation_batch_size=args.batch_size * 4,
        epochs=args.epochs,
        # The batches shuffle themselves, seeded by epoch; Keras' own shuffle of their order
        # draws from Python's global random state, which a resumed run does not get back.
        shuffle=False,
        callbacks=callbacks,
        verbose=2,
    )
    log.info("checkpoint: %s", run_dir / "best.keras")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
