"""Model metadata: the contract between a trained model and the code that runs it.

Every model in ``models/`` ships as ``<name>.keras`` plus ``<name>.json``. The
JSON says what the model takes (input shape, channel order, scaling), what it
gives (output kind) and how to decide (thresholds). Inference reads these
values instead of hard-coding them, in the spirit of MONAI model bundles.

Required keys (anything else is informational and shown on the model card)::

    {
      "name": "brainloc-classifier", "version": "1.0.0", "created": "YYYY-MM-DD",
      "task": "classification" | "segmentation",
      "weights": "classifier.keras",
      "input": {"shape": [256, 256, 3],
                "channels": ["pre-contrast", "FLAIR", "post-contrast"],
                "dtype": "uint8", "scaling": "uint8/255"},
      "output": {"kind": "probability" | "probability_map"},
      "decision": {"threshold": 0.5,          # classification
                   "extend_threshold": 0.2}   #   (optional: the volume rule, brainloc.decision)
      "decision": {"mask_threshold": 0.5}     # segmentation
      "ensemble": {"members": [               # segmentation, optional: more weights files
          {"weights": "segmenter_p99.keras",  #   whose probability maps are averaged with
           "input": {"shape": [256, 256, 3], "scaling": "slice-p99"}}]},  # the first's
      "metrics": {...}, "training": {...}, "intended_use": "..."
    }

An ensemble member takes the first model's input size and channel order (so that the
maps can be averaged) and may have its own scaling; the mean map is thresholded once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainloc.decision import check_extend_threshold
from brainloc.preprocessing import CHANNELS, SCALING_SCHEMES

#: Where the shipped models live, relative to the repository root.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

CLASSIFIER_NAME = "classifier"
SEGMENTER_NAME = "segmenter"


@dataclass(frozen=True)
class Member:
    """One weights file of a model and the scaling its input takes."""

    weights_path: Path
    input_size: int
    scaling: str


@dataclass(frozen=True)
class ModelSpec:
    """The parsed metadata of one model file pair."""

    name: str
    version: str
    task: str
    weights_path: Path
    input_size: int
    channels: tuple[str, ...]
    scaling: str
    threshold: float
    raw: dict[str, Any] = field(repr=False, compare=False)
    #: The volume rule's lower threshold (:func:`brainloc.decision.tumor_calls`); None: none.
    extend_threshold: float | None = None
    #: Further weights files whose probability maps are averaged with this one's (segmenter).
    extra_members: tuple[Member, ...] = ()

    @property
    def members(self) -> tuple[Member, ...]:
        """Every weights file of the model, the one named by ``weights`` first."""
        return (Member(self.weights_path, self.input_size, self.scaling), *self.extra_members)

    @property
    def label(self) -> str:
        """A short 'name vVERSION' string for reports and the database."""
        return f"{self.name} v{self.version}"


def load_spec(models_dir: Path | str, stem: str) -> ModelSpec:
    """Read ``models_dir/<stem>.json`` and check the keys inference depends on.

    Raises:
        FileNotFoundError: the metadata or the weights file is missing.
        ValueError: a required key is missing or malformed.
    """
    models_dir = Path(models_dir)
    meta_path = models_dir / f"{stem}.json"
    raw = json.loads(meta_path.read_text(encoding="utf-8"))
    try:
        task = raw["task"]
        shape = raw["input"]["shape"]
        decision = raw["decision"]
        threshold = (
            decision["threshold"] if task == "classification" else decision["mask_threshold"]
        )
        extend = decision.get("extend_threshold") if task == "classification" else None
        spec = ModelSpec(
            name=str(raw["name"]),
            version=str(raw["version"]),
            task=task,
            weights_path=models_dir / raw["weights"],
            input_size=int(shape[0]),
            channels=tuple(raw["input"]["channels"]),
            scaling=str(raw["input"]["scaling"]),
            threshold=float(threshold),
            raw=raw,
            extend_threshold=None if extend is None else float(extend),
            extra_members=_ensemble_members(raw, task, models_dir, shape),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{meta_path}: malformed model metadata ({exc!r})") from exc
    except ValueError as exc:
        raise ValueError(f"{meta_path}: {exc}") from None
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3:
        raise ValueError(f"{meta_path}: input.shape must be [S, S, 3], got {shape}")
    if spec.channels != CHANNELS:
        # Every reader and brainloc.preprocessing give the channels in this order; a model
        # trained on another would read FLAIR as a T1 without a word.
        raise ValueError(
            f"{meta_path}: input.channels must be {list(CHANNELS)} (the order BrainLoc feeds), "
            f"got {list(spec.channels)}"
        )
    for member in spec.members:
        if member.scaling not in SCALING_SCHEMES:
            raise ValueError(
                f"{meta_path}: input.scaling {member.scaling!r} is not one of "
                f"{list(SCALING_SCHEMES)}"
            )
    if not 0.0 < spec.threshold < 1.0:
        raise ValueError(f"{meta_path}: threshold must be in (0, 1), got {spec.threshold}")
    if spec.extend_threshold is not None:
        try:
            check_extend_threshold(spec.extend_threshold, spec.threshold)
        except ValueError as exc:
            raise ValueError(f"{meta_path}: decision.{exc}") from None
    for member in spec.members:
        if not member.weights_path.is_file():
            raise FileNotFoundError(
                f"weights file {member.weights_path} named by {meta_path} is missing"
            )
    return spec


def _ensemble_members(raw: dict, task: str, models_dir: Path, shape: list) -> tuple[Member, ...]:
    """The members listed under ``ensemble`` (none when the key is absent)."""
    if "ensemble" not in raw:
        return ()
    if task != "segmentation":
        raise ValueError("ensemble: only a segmentation model may have several weights files")
    members = raw["ensemble"]["members"]
    if not isinstance(members, list) or not members:
        raise ValueError("ensemble.members must be a non-empty list")
    found = []
    for index, member in enumerate(members):
        if list(member["input"]["shape"]) != list(shape):
            raise ValueError(
                f"ensemble.members[{index}]: input.shape {member['input']['shape']} differs "
                f"from input.shape {shape}; the maps could not be averaged"
            )
        found.append(
            Member(models_dir / member["weights"], int(shape[0]), str(member["input"]["scaling"]))
        )
    return tuple(found)


def models_available(models_dir: Path | str = DEFAULT_MODELS_DIR) -> bool:
    """True when both shipped models (metadata and every weights file) are present.

    Metadata that is present but malformed counts as present: loading it then says
    what is wrong, which "not installed" would hide."""
    for stem in (CLASSIFIER_NAME, SEGMENTER_NAME):
        try:
            load_spec(models_dir, stem)
        except FileNotFoundError:
            return False
        except ValueError:
            continue
    return True


#: The out-of-fold blocks ``training.crossval summarize`` writes with the volume rule, each
#: measured at one classifier threshold (0.5, and Youden's J threshold).
OUT_OF_FOLD_VOLUME_RULE_BLOCKS = ("at_0.5_volume_rule", "at_youden_volume_rule")


def out_of_fold_at(out_of_fold: dict[str, Any], threshold: float | None) -> dict[str, Any]:
    """The out-of-fold numbers measured at ``threshold`` with the volume rule, or {} when
    the cross-validation measured none at that threshold (e.g. a threshold set by hand).

    ``out_of_fold``: the ``crossval.json`` summary that the export records under the
    classifier's ``training.cross_validation.out_of_fold``.
    """
    if threshold is None:
        return {}
    for name in OUT_OF_FOLD_VOLUME_RULE_BLOCKS:
        block = out_of_fold.get(name)
        if isinstance(block, dict) and block.get("threshold") == threshold:
            return block
    return {}
