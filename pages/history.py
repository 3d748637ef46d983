"""History page: every analysis the practitioner ever made, filtered, sorted, charted, exported.

The filters go to :func:`db.clinical.list_analyses`, which always filters by the signed-in
owner in SQL; the table, the weekly charts and the CSV come from :mod:`brainloc.history`.
Analyses marked entered in error are left out unless the "Entered in error" filter asks for
them; then their reason is in the table and the CSV.
"""

import streamlit as st

from brainloc import charts
from brainloc.history import day_range, history_frame, shown_frame, to_csv, weekly_summary
from db import clinical, clinical_notes
from db.audit import Action, record_event
from db.engine import session_scope
from ui.guard import require_user
from ui.markdown import escape_markdown

user = require_user()

DECISIONS = {"all": None, "tumor": True, "no tumor": False}
#: The "Entered in error" filter: its choices and the value list_analyses takes for each.
IN_ERROR = {"left out": False, "shown too": None, "only those": True}
SORTS = {
    "created_at": "Date",
    "tumor_probability": "Tumor probability",
    "case_reference": "Case reference",
}


def _export(rows: int) -> None:
    # Not guarded: the CSV is already in the browser; the click is an export to audit.
    with session_scope() as session:
        record_event(
            session,
            action=Action.EXPORT,
            actor_id=user.id,
            detail={"what": "history_csv", "rows": rows},
        )


st.title("History")
top = st.columns([2, 1, 2])
dates = top[0].date_input("Date range", value=(), key="history_dates")
decision = top[1].selectbox("Decision", list(DECISIONS), key="history_decision")
low, high = top[2].slider("Tumor probability (%)", 0, 100, (0, 100), key="history_probability")
bottom = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
text = bottom[0].text_input(
    "Search case reference or current note", max_chars=200, key="history_text"
)
sort_by = bottom[1].selectbox("Sort by", list(SORTS), format_func=SORTS.get, key="history_sort")
descending = bottom[2].toggle("Newest / highest first", value=True, key="history_desc")
in_error = bottom[3].selectbox(
    "Entered in error",
    list(IN_ERROR),
    help="Analyses their owner marked entered in error (kept, not deleted).",
    key="history_in_error",
)

start = dates[0] if len(dates) >= 1 else None
end = dates[1] if len(dates) == 2 else start
try:
    created_from, created_to = day_range(start, end)
    with session_scope() as session:
        analyses = clinical.list_analyses(
            session,
            owner_id=user.id,
            created_from=created_from,
            created_to=created_to,
            has_tumor=DECISIONS[decision],
            min_probability=low / 100,
            max_probability=high / 100,
            text=text,
            entered_in_error=IN_ERROR[in_error],
            sort_by=sort_by,
            descending=descending,
            limit=clinical.HISTORY_LIMIT + 1,
        )
        more = len(analyses) > clinical.HISTORY_LIMIT
        analyses = analyses[: clinical.HISTORY_LIMIT]
        notes = clinical_notes.latest_notes(
            session, owner_id=user.id, analysis_ids=[a.id for a in analyses]
        )
except ValueError as error:
    st.error(str(error))
    st.stop()

frame = history_frame(analyses, {key: note.body for key, note in notes.items()})
if more:
    limit = f"{clinical.HISTORY_LIMIT:,}"
    st.warning(
        f"More than {limit} analyses match: the first {limit} in the chosen order are shown, "
        "counted and exported. Narrow the dates or filters for the rest."
    )
else:
    st.caption(f"{len(frame)} analysis(es) match.")
if frame.empty:
    st.info("No analyses match these filters.")
    st.stop()

event = st.dataframe(
    shown_frame(frame),
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    column_config={
        "id": st.column_config.NumberColumn("#", width="small"),
        "created_at": st.column_config.DatetimeColumn("Date (UTC)", format="YYYY-MM-DD HH:mm"),
        "case_reference": "Case reference",
        "decision": "Decision",
        "tumor_probability": st.column_config.ProgressColumn(
            "Tumor probability",
            min_value=0.0,
            max_value=100.0,
            format="%.1f%%",
            help="Shown between 0.1% and 99.9%: the model is never certain. "
            "The CSV export holds the stored value.",
        ),
        "slices": "Slices",
        "tumor_slices": "Tumor slices",
        "largest_cross_section": st.column_config.TextColumn(
            "Largest cross-section",
            help="Longest × perpendicular diameter of the largest tumor section (see the case).",
        ),
        "volume_ml": st.column_config.NumberColumn("Volume (mL)", format="%.2f"),
        "note": "Current note",
        "models": "Models",
        "entered_in_error": st.column_config.TextColumn(
            "Entered in error (reason)",
            help="Empty unless the analysis was marked entered in error: then, why.",
        ),
    },
    key="history_table",
)
selected_rows = list(event.selection.rows) if event is not None else []
ids = frame["id"].tolist()
labels = dict(zip(ids, frame["case_reference"], strict=True))
in_error_ids = set(frame.loc[frame["entered_in_error"] != "", "id"])
# The table reports its selection on every rerun while a row stays selected: only a new
# selection picks the case below, so a case chosen in the picker afterwards stays chosen.
if selected_rows != st.session_state.get("history_table_seen"):
    st.session_state["history_table_seen"] = selected_rows
    if selected_rows and selected_rows[0] < len(ids):
        st.session_state["history_open"] = ids[selected_rows[0]]
if st.session_state.get("history_open") not in labels:
    st.session_state["history_open"] = None
left, right = st.columns([3, 2])
chosen = left.selectbox(
    "Open a case",
    ids,
    format_func=lambda key: (
        f"{labels[key]} · #{key}" + (" · ENTERED IN ERROR" if key in in_error_ids else "")
    ),
    placeholder="Select a row above or choose here",
    key="history_open",
)
if chosen is not None:
    left.page_link(
        "pages/case.py",
        label=f"Open {escape_markdown(labels[chosen])} (#{chosen})",
        icon=":material/folder_open:",
        query_params={"id": str(chosen)},
    )
right.download_button(
    "Export CSV",
    data=to_csv(frame),
    file_name="brainloc_history.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click=_export,
    args=(len(frame),),
    key="history_csv",
)

st.subheader("Analyses per week and share positive")
st.plotly_chart(charts.weekly_chart(weekly_summary(frame)), key="history_weekly")
