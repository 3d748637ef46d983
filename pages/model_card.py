"""Model card page: what the shipped models are, how they were trained and tested, and what
they are for. Everything comes from the models' metadata files (:mod:`brainloc.model_card`)."""

import streamlit as st

from brainloc import charts
from brainloc.model_card import load_cards, precision_note
from brainloc.settings import get_settings
from ui.guard import require_user

user = require_user()

st.title("Model card")
st.info(
    "BrainLoc is for research and decision support. It supports, and does not replace, a "
    "qualified specialist's judgement; it is not a certified diagnostic device."
)
models_dir = get_settings().models_dir
cards, problems = load_cards(models_dir)
for problem in problems:
    st.warning(f"Model metadata not available: {problem}")
for card in cards:
    st.header(card.label)
    st.caption(f"{card.task.capitalize()} · created {card.created or '-'}")
    if card.headline:
        columns = st.columns(min(4, len(card.headline)))
        for position, (label, value) in enumerate(card.headline):
            columns[position % len(columns)].metric(label, f"{value:.3f}")
    if card.architecture:
        st.markdown(f"**Architecture.** {card.architecture}")
    st.markdown(f"**Input.** {card.input_description}")
    if card.decision_text:
        st.markdown(f"**Decision.** {card.decision_text}")
    if card.training_summary:
        st.markdown(f"**Training data and split.** {card.training_summary}")
    if card.intended_use:
        st.markdown(f"**Intended use.** {card.intended_use}")
    chart_columns = st.columns(2)
    if card.confusion:
        with chart_columns[0]:
            st.markdown("**Confusion matrix** (test patients)")
            st.plotly_chart(
                charts.confusion_matrix(card.confusion, ["no tumor", "tumor"]),
                key=f"model_{card.stem}_confusion",
            )
    if card.roc:
        fpr, tpr, auc = card.roc
        with chart_columns[1]:
            st.markdown("**ROC curve** (test patients)")
            st.plotly_chart(charts.roc_curve(fpr, tpr, auc), key=f"model_{card.stem}_roc")
    if card.found_by_size:
        st.markdown("**Tumor slices found, by tumor size**")
        st.caption(
            "The first and last sections of a tumor are small, and they are the ones most "
            "often missed: a negative call on a slice is least reliable where a small lesion "
            "could be."
        )
        st.dataframe(card.found_by_size, hide_index=True)
    with st.expander("Training data, split and all metrics"):
        st.markdown("**Decision thresholds and how they were chosen**")
        st.json(card.thresholds, expanded=False)
        st.json(card.training or {}, expanded=False)
        st.json(card.metrics or {}, expanded=False)

if cards:
    st.caption(precision_note(get_settings().inference_precision))

readme = models_dir / "README.md"
if readme.is_file():
    with st.expander("The full model card (models/README.md)"):
        st.markdown(readme.read_text(encoding="utf-8"))
