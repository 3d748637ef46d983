"""The result view shared by the analyze and case pages: gauge, decision, scan and overlay
with display controls, Grad-CAM, findings, and for a case the per-slice chart and summary.

Everything it shows comes from a stored case (:class:`brainloc.casework.StoredCase`), so an
analysis looks the same right after the upload and when it is reopened later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from brainloc import charts, overlay
from brainloc.casework import StoredCase
from brainloc.findings_text import (
    VOLUME_RULE_NOTE,
    called_by_volume_rule,
    case_rows,
    findings_rows,
    probability_text,
)
from brainloc.results import NEGATIVE_CAUTION
from brainloc.scans import SINGLE_SEQUENCE_NOTE
from ui.markdown import escape_markdown
from ui.models import pipeline_if_loaded

SEQUENCE_LABELS = {
    "FLAIR": "FLAIR",
    "pre-contrast": "Pre-contrast",
    "post-contrast": "Post-contrast",
    "composite": "Composite (the three sequences as RGB)",
}
STYLE_LABELS = {"fill": "Fill", "outline": "Outline", "fill+outline": "Fill + outline"}


@dataclass(frozen=True)
class Shown:
    """What the view ended up showing: the slice index (from 0) and the overlay picture."""

    index: int
    overlay: np.ndarray


def _table(rows: list[tuple[str, str]]) -> None:
    st.table(
        {"Finding": [label for label, _ in rows], "Value": [value for _, value in rows]},
        hide_index=True,
    )


def _decision(case: StoredCase, key: str) -> None:
    st.plotly_chart(
        charts.probability_gauge(case.tumor_probability, case.threshold),
        key=f"{key}_gauge",
        config={"displayModeBar": False},
    )
    label = "Tumor probability" if len(case.slices) == 1 else "Highest slice probability"
    stated = f"{label} {probability_text(case.tumor_probability)}"
    if case.has_tumor:
        st.error(f"**Tumor suspected** - {stated}", icon="⚠️")
    else:
        st.success(f"**No tumor detected** - {stated}")
        st.warning(NEGATIVE_CAUTION, icon="ℹ️")
    st.caption(f"Decision threshold {case.threshold:.0%} · models: {case.models_text}")


def _slice_picker(case: StoredCase, key: str) -> int:
    if len(case.slices) == 1:
        return 0
    # Slices are numbered from 1 on screen (as in the Kaggle file names); indices start at 0.
    chosen = st.session_state.get(f"{key}_slice", case.key_slice + 1) - 1
    st.plotly_chart(
        charts.case_chart(
            [s.tumor_probability for s in case.slices],
            [int(s.findings.get("area_px", 0)) for s in case.slices],
            case.threshold,
            selected=chosen,
        ),
        key=f"{key}_case_chart",
    )
    number = st.slider("Slice", 1, len(case.slices), value=case.key_slice + 1, key=f"{key}_slice")
    return number - 1


def _controls(key: str, gradcam_available: bool) -> dict:
    with st.expander("Display", expanded=False):
        left, right = st.columns(2)
        show = left.toggle("Show tumor overlay", value=True, key=f"{key}_show")
        style = left.radio(
            "Overlay style",
            list(STYLE_LABELS),
            format_func=STYLE_LABELS.get,
            horizontal=True,
            key=f"{key}_style",
        )
        opacity = left.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key=f"{key}_opacity")
        calipers = left.toggle(
            "Show diameters",
            value=True,
            help="The longest tumor diameter and the longest one perpendicular to it, in yellow.",
            key=f"{key}_calipers",
        )
        sequence = right.selectbox(
            "Displayed sequence",
            list(SEQUENCE_LABELS),
            format_func=SEQUENCE_LABELS.get,
            key=f"{key}_sequence",
        )
        auto = right.toggle("Automatic contrast window", value=True, key=f"{key}_auto_window")
        window = right.slider(
            "Contrast window", 0, 255, (0, 255), disabled=auto, key=f"{key}_window"
        )
        gradcam = right.toggle(
            "Grad-CAM heatmap",
            value=False,
            disabled=not gradcam_available,
            help="Where the classifier looked. Needs the installed models.",
            key=f"{key}_gradcam",
        )
    if not auto and window[1] <= window[0]:
        window = (window[0], min(255, window[0] + 1))
    return {
        "show": show,
        "style": style,
        "opacity": opacity,
        "calipers": calipers,
        "sequence": sequence,
        "window": None if auto else tuple(float(v) for v in window),
        "gradcam": gradcam and gradcam_available,
    }


def _heatmap(pipeline, case: StoredCase, index: int, key: str) -> np.ndarray:
    cache_key = f"{key}_cam_{index}"
    if cache_key not in st.session_state:
        with st.spinner("Computing Grad-CAM..."):
            st.session_state[cache_key] = pipeline.gradcam(case.slices[index].image)
    return st.session_state[cache_key]


def render_case(case: StoredCase, *, key: str) -> Shown:
    """Render the result of a stored case; widget keys start with ``key``."""
    top_left, top_right = st.columns([2, 3])
    with top_left:
        _decision(case, key)
    with top_right:
        index = _slice_picker(case, key)
        if len(case.slices) > 1:
            _table(case_rows(case))
    pipeline = pipeline_if_loaded()
    options = _controls(key, gradcam_available=pipeline is not None)
    shown = case.slices[index]
    percentiles = (0.5, 99.5) if options["window"] is None else None
    base = overlay.display_image(shown.image, options["sequence"], options["window"], percentiles)
    heatmap = _heatmap(pipeline, case, index, key) if options["gradcam"] else None
    calipers = shown.findings.get("calipers") if options["show"] and options["calipers"] else None
    picture = overlay.render(
        shown.image,
        shown.mask if options["show"] else None,
        sequence=options["sequence"],
        window=options["window"],
        window_percentiles=percentiles,
        style=options["style"],
        opacity=options["opacity"],
        heatmap=heatmap,
        calipers=calipers,
    )
    name = f" - {shown.name}" if shown.name else ""
    scan_column, overlay_column = st.columns(2)
    scan_column.image(base, caption=f"Scan, slice {index + 1}{name}", width="stretch")
    overlay_column.image(
        picture,
        caption="Detected tumor in red"
        + (", diameters in yellow" if calipers else "")
        + (" with Grad-CAM" if heatmap is not None else ""),
        width="stretch",
    )
    stated = probability_text(shown.tumor_probability)
    st.markdown(f"**Findings, slice {index + 1}** · probability {stated}")
    if called_by_volume_rule(shown, case.threshold):
        st.caption(VOLUME_RULE_NOTE)
    _table(findings_rows(shown.findings))
    notes = case.findings.get("scan_notes") or []
    sequences = case.findings.get("sequences_present") or []
    if sequences and len(sequences) < 3:
        # One line says it: the scan's own note (what was done) gets the reason added.
        notes = [note for note in notes if note != SINGLE_SEQUENCE_NOTE]
        notes = [
            *notes,
            f"Only {', '.join(sequences)} present: copied into all three model channels; the "
            "models were trained on pre-contrast, FLAIR and post-contrast.",
        ]
    for note in notes:
        # Notes name files and DICOM series descriptions, which come from outside.
        st.caption(escape_markdown(note))
    return Shown(index=index, overlay=picture)
