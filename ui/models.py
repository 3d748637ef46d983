"""The inference pipeline, loaded once per server process with ``st.cache_resource``.

Every session and every page shares the one :class:`brainloc.inference.Pipeline` (it is
thread-safe), so a second user's analysis never reloads the models. TensorFlow is imported
only when a page actually needs the models.
"""

from __future__ import annotations

import logging

import streamlit as st

from brainloc.model_meta import models_available
from brainloc.settings import get_settings

logger = logging.getLogger(__name__)


@st.cache_resource(show_spinner="Loading the models (once per server start)...")
def _load(models_dir: str, precision: str):
    from brainloc.inference import Pipeline

    logger.info("loading the pipeline from %s (%s)", models_dir, precision)
    return Pipeline.load(models_dir, precision)


def get_pipeline():
    """The shared pipeline, or None (with an explanation shown) when the models are missing."""
    models_dir = get_settings().models_dir
    if not models_available(models_dir):
        st.warning(
            f"The trained models are not installed in `{models_dir}`, so new scans cannot be "
            "analysed. Stored cases can still be opened."
        )
        return None
    try:
        return _load(str(models_dir), get_settings().inference_precision)
    except (OSError, ValueError) as error:
        logger.exception("the models could not be loaded")
        st.error(f"The models could not be loaded: {error}")
        return None


def pipeline_if_loaded():
    """The shared pipeline when the models are installed, else None, without any message."""
    models_dir = get_settings().models_dir
    if not models_available(models_dir):
        return None
    try:
        return _load(str(models_dir), get_settings().inference_precision)
    except (OSError, ValueError):
        return None
