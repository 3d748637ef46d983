"""What the pipeline returns: plain, frozen values for the pages, the CLI and the database.

Kept apart from :mod:`brainloc.inference` so that code which only reads
results (reports, view models) does not load TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brainloc.findings import CaseFindings, SliceFindings

#: Shown with every negative result (app and PDF): the classifier can miss a whole tumor.
NEGATIVE_CAUTION = (
    "A negative result does not rule out a tumor: on patients it never saw, the classifier "
    "missed some tumors entirely. The model card gives the measured sensitivity."
)


@dataclass(frozen=True)
class SliceResult:
    """The pipeline's answer for one slice.

    Attributes:
        tumor_probability: classifier P(tumor) in [0, 1].
        has_tumor: the decision: probability >= threshold, or the volume rule
            (:mod:`brainloc.decision`) for a slice of an ordered volume.
        mask: bool (H, W) at the input's size; all False when negative.
        findings: measurements of ``mask`` (see :class:`SliceFindings`).
        threshold: the decision threshold from the classifier metadata.
        model_versions: {"classifier": "name vX", "segmenter": "name vY"}.
        name: the slice's label (file name, page), when known.
    """

    tumor_probability: float
    has_tumor: bool
    mask: np.ndarray = field(repr=False)
    findings: SliceFindings
    threshold: float
    model_versions: dict[str, str]
    name: str = ""

    @property
    def tumor_area_px(self) -> int:
        return self.findings.area_px

    def to_dict(self) -> dict:
        """JSON-ready summary (the mask itself is left out)."""
        return {
            "name": self.name,
            "tumor_probability": self.tumor_probability,
            "has_tumor": self.has_tumor,
            "threshold": self.threshold,
            "tumor_area_px": self.tumor_area_px,
            "findings": self.findings.to_dict(),
            "model_versions": dict(self.model_versions),
        }


@dataclass(frozen=True)
class CaseResult:
    """The pipeline's answer for a stack of slices, in their order."""

    slices: tuple[SliceResult, ...]
    findings: CaseFindings
    model_versions: dict[str, str]
    spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None

    @property
    def probabilities(self) -> np.ndarray:
        """float (N,) tumor probability per slice."""
        return np.array([s.tumor_probability for s in self.slices], dtype=np.float64)

    @property
    def masks(self) -> np.ndarray:
        """bool (N, H, W); needs slices of one size."""
        return np.stack([s.mask for s in self.slices])

    def to_dict(self) -> dict:
        return {
            "slices": [s.to_dict() for s in self.slices],
            "findings": self.findings.to_dict(),
            "model_versions": dict(self.model_versions),
            "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "slice_thickness_mm": self.slice_thickness_mm,
        }
