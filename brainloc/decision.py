"""How classifier outputs become P(tumor), and slice probabilities become tumor calls: one
slice alone, or the slices of one volume.

P(tumor) is the classifier's tumor output, averaged over the slice and its left-right mirror
when the metadata asks for ``horizontal_flip`` test-time augmentation
(:func:`flip_averaged_probabilities`). A single slice is called tumor when its P(tumor)
reaches the classifier's threshold.

In an ordered volume (a DICOM series, a NIfTI file, a multi-page TIFF, or the numbered
slices of one Kaggle-layout case) a tumor is one connected object, and its first and last
slices show only a sliver of it, so the classifier is least sure exactly there. A radiologist
reads those slices next to their neighbours; the volume rule does the same, as hysteresis
along the slice axis: every slice at or above the threshold is called tumor, and so is each
slice at or above the lower ``extend_threshold`` that is joined to such a slice through
slices all at or above ``extend_threshold``. Slices on either side of a gap in a DICOM series
(slices missing there) are not joined. A run of slices that never reaches the
threshold is not called, so a volume is called tumor exactly when the single-slice rule
would call one of its slices.

A segmenter ensemble's probability maps are averaged before the mask threshold
(:func:`ensemble_probability_map`).

The classifier metadata holds both numbers (``decision.threshold`` and
``decision.extend_threshold``); training's cross-validation and the evaluation CLI call this
same function, so the rule measured is the rule the app runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage


def tumor_probabilities(outputs: np.ndarray) -> np.ndarray:
    """Classifier outputs to P(tumor): (N, 1) sigmoid, or (N, 2) softmax with class 1 = tumor."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] not in (1, 2):
        raise ValueError(f"classifier output must be (N, 1) or (N, 2), got {outputs.shape}")
    return outputs[:, -1]


def flip_averaged_probabilities(predict, batch: np.ndarray) -> np.ndarray:
    """P(tumor) averaged over each prepared slice and its left-right mirror.

    ``predict`` maps a prepared (N, S, S, 3) batch to the classifier's outputs; the slices
    and their mirrors go through it in one call. The app's pipeline and training's
    cross-validation both score this way, so the rule measured is the rule the app runs.
    """
    both = np.concatenate([batch, batch[:, :, ::-1]])
    probability = tumor_probabilities(predict(both))
    return (probability[: len(batch)] + probability[len(batch) :]) / 2.0


def ensemble_probability_map(
    members: Sequence[tuple[Any, int, str]],
    images,
    prepare: Callable[[Any, int, str], np.ndarray],
    predict: Callable[[Any, np.ndarray], np.ndarray],
    prepared: tuple[int, str, np.ndarray] | None = None,
    flip: bool = False,
) -> np.ndarray:
    """The mean of the segmenter ensemble's probability maps for ``images``.

    Args:
        members: ``(model, input_size, scaling)`` per member, as the metadata names them.
        images: the slices, as ``prepare`` takes them.
        prepare: ``prepare(images, size, scaling)`` -> the model input.
        predict: ``predict(model, batch)`` -> (N, S, S, 1) maps.
        prepared: ``(size, scaling, batch)``: these slices already prepared (the classifier's
            input); a member that takes that size and scaling uses it instead of preparing
            the slices again.
        flip: each member's map is also averaged with its map of the left-right mirrored
            slices, mirrored back (the segmenter metadata's ``horizontal_flip`` test-time
            augmentation); the slices and their mirrors go through the model in one call.

    The app's pipeline and training's cross-validation both average this way before the
    mask threshold, so the ensemble measured is the ensemble the app runs.
    """
    total = None
    for model, size, scaling in members:
        if prepared is not None and (size, scaling) == prepared[:2]:
            batch = prepared[2]
        else:
            batch = prepare(images, size, scaling)
        if flip:
            both = predict(model, np.concatenate([batch, batch[:, :, ::-1]]))
            maps = (both[: len(batch)] + both[len(batch) :, :, ::-1]) / 2.0
        else:
            maps = predict(model, batch)
        total = maps if total is None else total + maps
    if total is None:
        raise ValueError("an ensemble needs at least one member")
    return total / len(members)


def check_extend_threshold(extend_threshold: float, threshold: float) -> None:
    """Raise ValueError unless ``0 < extend_threshold <= threshold`` (the rule's contract)."""
    if not 0.0 < extend_threshold <= threshold:
        raise ValueError(
            f"extend_threshold must be in (0, threshold={threshold}], got {extend_threshold}"
        )


def tumor_calls(
    probabilities,
    threshold: float,
    extend_threshold: float | None = None,
    gaps_after: Sequence[int] = (),
) -> np.ndarray:
    """Tumor calls for the slices of one volume, in slice order.

    Args:
        probabilities: P(tumor) per slice, shape (N,), in the volume's slice order.
        threshold: a slice at or above it is called tumor.
        extend_threshold: the volume rule's lower threshold (``<= threshold``); None
            applies the single-slice rule to every slice.
        gaps_after: indices k where slices are missing between slice k and k + 1 (a DICOM
            series with a gap, :attr:`brainloc.scans.Scan.gaps_after`). Slices on either side
            of a gap are not neighbours, so the volume rule does not join them: each part
            is a volume of its own.

    Returns:
        bool array (N,).
    """
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 1:
        raise ValueError(f"expected one probability per slice, got shape {probabilities.shape}")
    seeds = probabilities >= threshold
    if extend_threshold is None:
        return seeds
    check_extend_threshold(extend_threshold, threshold)
    if not seeds.any():
        return seeds
    cuts = sorted({int(k) + 1 for k in gaps_after})
    if cuts and not 0 < cuts[0] <= cuts[-1] < len(probabilities):
        raise ValueError(f"gaps after slices {list(gaps_after)} in {len(probabilities)} slices")
    calls = np.zeros_like(seeds)
    for part, part_seeds, part_calls in zip(
        np.split(probabilities, cuts), np.split(seeds, cuts), np.split(calls, cuts), strict=True
    ):
        if part_seeds.any():
            runs, _ = ndimage.label(part >= extend_threshold)
            part_calls[:] = np.isin(runs, np.unique(runs[part_seeds]))
    return calls
