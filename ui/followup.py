"""The Case page's "Compare with an earlier scan": the shown case as the follow-up of another
of the user's own analyses (:mod:`brainloc.followup`)."""

from __future__ import annotations

import streamlit as st

from brainloc.followup import RANO_LGG_THRESHOLDS, baseline_choices, compare_own
from db import clinical
from db.audit import Action
from db.engine import session_scope

#: session_state key: the (case, baseline) pair whose view was audited last.
AUDITED_KEY = "followup_audited"


def render_comparison(owner_id: int, analysis_id: int) -> int | None:
    """An expander with a baseline picker over the owner's other analyses (not those marked
    entered in error) and, once one is chosen, the size comparison. Every read is filtered by
    ``owner_id`` in the database.

    Returns:
        The chosen baseline's id (for a follow-up report), or None.
    """
    with st.expander("Compare with an earlier scan", expanded=False):
        with session_scope() as session:
            mine = clinical.list_analyses(session, owner_id=owner_id, limit=clinical.PICKER_LIMIT)
        labels = baseline_choices(mine, analysis_id)
        if not labels:
            st.caption("You have no other analysis to compare this one with.")
            return None
        baseline_id = st.selectbox(
            "Baseline (the earlier scan of the same patient)",
            list(labels),
            index=None,
            format_func=labels.get,
            placeholder="Choose one of your analyses",
            help="Scans made before this one come first when the files record the scan date "
            "(DICOM); otherwise which scan is earlier is your choice, and the list shows when "
            "each was uploaded.",
            key=f"followup_baseline_{analysis_id}",
        )
        if baseline_id is None:
            return None
        with session_scope() as session:
            compared = compare_own(
                session, owner_id=owner_id, analysis_id=analysis_id, baseline_id=baseline_id
            )
            if compared is None:
                st.error("That analysis was not found among your analyses.")
                return None
            comparison = compared[1]
            if st.session_state.get(AUDITED_KEY) != (analysis_id, baseline_id):
                clinical.record_case_event(
                    session,
                    owner_id=owner_id,
                    analysis_id=baseline_id,
                    action=Action.VIEW,
                    detail={"as_baseline_of": analysis_id},
                )
                st.session_state[AUDITED_KEY] = (analysis_id, baseline_id)
        st.table(
            {
                "Measure": [row.label for row in comparison.rows],
                f"Baseline #{baseline_id}": [row.baseline for row in comparison.rows],
                f"This analysis #{analysis_id}": [row.follow_up for row in comparison.rows],
                "Change": [row.change for row in comparison.rows],
            },
            hide_index=True,
        )
        for note in comparison.notes:
            st.caption(note)
        st.caption(RANO_LGG_THRESHOLDS)
        return baseline_id
