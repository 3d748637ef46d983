"""Case page: reopen an own analysis, compare it with an earlier one, write versioned notes,
download images (or the whole case as NIfTI), issue reports, correct the case reference or
mark the analysis entered in error (then it carries a banner, and its note and reference are
read only).

The case comes from ``?id=`` or from the picker; the database returns it only to its owner,
so another user's id shows the same "not found" as an id that does not exist. Opening a case,
saving a note, issuing a report, correcting the reference, marking it entered in error and
every download write an audit event.
"""

import streamlit as st

from brainloc.case_export import export_problem, nifti_zip, safe_stem
from brainloc.case_report import Author, issue_case_report
from brainloc.casework import load_case, png_bytes
from brainloc.overlay import mask_png_array
from db import clinical, clinical_notes
from db.audit import Action
from db.engine import session_scope
from ui.case_record import (
    render_entered_in_error_banner,
    render_entered_in_error_form,
    render_reference_correction,
)
from ui.case_view import render_case
from ui.followup import render_comparison
from ui.guard import guarded_callback, require_user
from ui.markdown import escape_markdown
from ui.notes import render_notes
from ui.prepared import render_prepared_download

user = require_user()

VIEWED_KEY = "case_viewed_id"
SEEN_KEY = "case_query_seen"


def _audit(analysis_id: int, action: str, **detail) -> None:
    # Not guarded: a download button's file is already in the browser, so a click is a
    # download whatever the session's state, and the audit log must have it.
    with session_scope() as session:
        clinical.record_case_event(
            session, owner_id=user.id, analysis_id=analysis_id, action=action, detail=detail
        )


def _requested_id() -> int | None:
    raw = st.query_params.get("id")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return -1
    # Beyond a database integer (a mistyped or crafted link) no analysis can match.
    return value if 0 < value < 2**63 else -1


def _pick(current: int | None) -> int | None:
    """A picker over the user's own analyses; it drives ``?id=``."""
    with session_scope() as session:
        # Analyses entered in error stay reachable here, labelled as such.
        mine = clinical.list_analyses(
            session, owner_id=user.id, entered_in_error=None, limit=clinical.PICKER_LIMIT
        )
    if not mine:
        st.info("You have no analyses yet. Start on the Analyze page.")
        return None
    if len(mine) == clinical.PICKER_LIMIT:
        st.caption(
            f"Your newest {clinical.PICKER_LIMIT:,} analyses are listed; find older ones on the "
            "History page (filter by date or case reference)."
        )
    labels = {
        a.id: f"{a.case_reference} · #{a.id} · {a.created_at:%Y-%m-%d %H:%M}"
        + (" · ENTERED IN ERROR" if a.entered_in_error_at else "")
        for a in mine
    }
    options = list(labels)
    # A new ?id= in the address (a link, a bookmark) wins over the picker's last choice.
    set_now = False
    if current in labels and st.session_state.get(SEEN_KEY) != current:
        st.session_state["case_select"] = current
        set_now = True
    st.session_state[SEEN_KEY] = current
    if st.session_state.get("case_select") not in labels:
        st.session_state["case_select"] = current if current in labels else None
        set_now = True
    selected = st.session_state["case_select"]
    # The browser shows the option at ``index`` until a run's value reaches it. A rerun that
    # overtakes the run which set the value (the sign-in cookie's, after a page load) left
    # the newest case in the picker while the page showed the requested one, and the next
    # click sent the newest back: a note typed for one case was saved to another. So every
    # other run names the selected case as the default too (not the run that sets it, where
    # Streamlit warns about a default beside a value set through the session state).
    index = options.index(selected) if selected is not None and not set_now else 0
    chosen = st.selectbox(
        "Case",
        options,
        index=index,
        format_func=labels.get,
        placeholder="Choose one of your analyses",
        key="case_select",
    )
    if chosen is not None and chosen != current:
        st.query_params["id"] = str(chosen)
        st.session_state[SEEN_KEY] = chosen
    return chosen


def _nifti(case) -> tuple[bytes, str]:
    """The whole case as NIfTI (the Prepare button's build, audited as a download: from now on
    the browser can fetch it)."""
    data = nifti_zip(case)
    _audit(case.id, Action.DOWNLOAD, what="nifti_zip")
    return data, f"{safe_stem(case)}_nifti.zip"


def _downloads(case, shown) -> None:
    mask = case.slices[shown.index].mask
    safe = f"case{case.id}_slice{shown.index + 1}"  # slices are counted from 1 on screen
    left, right, volume = st.columns(3)
    left.download_button(
        "Download mask (PNG)",
        data=png_bytes(mask_png_array(mask)),
        file_name=f"{safe}_mask.png",
        mime="image/png",
        on_click=_audit,
        args=(case.id, Action.DOWNLOAD),
        kwargs={"what": "mask_png", "slice_number": shown.index + 1},
        key=f"case_dl_mask_{case.id}",
    )
    right.download_button(
        "Download overlay (PNG)",
        data=png_bytes(shown.overlay),
        file_name=f"{safe}_overlay.png",
        mime="image/png",
        on_click=_audit,
        args=(case.id, Action.DOWNLOAD),
        kwargs={"what": "overlay_png", "slice_number": shown.index + 1},
        key=f"case_dl_overlay_{case.id}",
    )
    problem = export_problem(case)
    render_prepared_download(
        volume,
        key="case_nifti",
        fingerprint=case.id,
        build=lambda: _nifti(case),
        prepare_label="Prepare the case as NIfTI",
        download_label="Download the case (NIfTI)",
        mime="application/zip",
        disabled=problem is not None,
        help=f"Not available: {problem}."
        if problem
        else "The three sequences and the predicted mask as NIfTI files in one ZIP, for a "
        "volume viewer such as ITK-SNAP or 3D Slicer (README.txt inside).",
    )


@guarded_callback()
def _issue(analysis_id: int, baseline_id: int | None) -> None:
    author = Author(user.id, user.full_name, user.category, user.institution)
    with session_scope() as session:
        issue_case_report(session, author=author, analysis_id=analysis_id, baseline_id=baseline_id)


def _report_label(report, versions: dict, case) -> str:
    note = versions.get(report.note_version_id)
    label = f"Report #{report.id} · {report.created_at:%Y-%m-%d %H:%M:%S} UTC"
    label += f" · note version {note}" if note else " · no note"
    if case.entered_in_error and report.created_at < case.entered_in_error_at:
        label += " · issued before the analysis was marked entered in error (does not say so)"
    return label


def _reports(case, baseline_id: int | None) -> None:
    st.subheader("Reports")
    placeholder = st.empty()
    st.button(
        "Issue a new PDF report",
        help="The report holds the current note and, when a baseline is chosen under "
        "'Compare with an earlier scan', the comparison; once issued it never changes. A "
        "report of an analysis entered in error says so at its top and on every page.",
        on_click=_issue,
        args=(case.id, baseline_id),
        key=f"case_issue_{case.id}",
    )
    if baseline_id is not None:
        st.caption(f"A new report will include the comparison with analysis #{baseline_id}.")
    with session_scope() as session:
        saved = clinical_notes.latest_note(session, analysis_id=case.id, owner_id=user.id)
        reports = clinical_notes.list_reports(session, analysis_id=case.id, owner_id=user.id)
        versions = {
            n.id: n.version
            for n in clinical_notes.note_history(session, analysis_id=case.id, owner_id=user.id)
        }
    editing = st.session_state.get(f"note_text_{case.id}", "")
    if editing != (saved.body if saved else ""):
        placeholder.warning("The note has unsaved changes; a report holds the saved note only.")
    if not reports:
        st.caption("No report issued yet.")
    for report in reports:
        st.download_button(
            _report_label(report, versions, case),
            data=report.pdf,
            file_name=report.filename,
            mime="application/pdf",
            icon=":material/picture_as_pdf:",
            on_click=_audit,
            args=(case.id, Action.REPORT_DOWNLOAD),
            kwargs={"report_id": report.id},
            key=f"case_report_dl_{report.id}",
        )


st.title("Case")
# The picker's state is dropped whenever another page ran in between, so its absence means
# the user has just come to this page: that is a new view of the case, audited again.
arriving = "case_select" not in st.session_state
requested = _requested_id()
analysis_id = _pick(requested)
if analysis_id is None and requested is None:
    st.stop()
analysis_id = analysis_id if analysis_id is not None else requested
with session_scope() as session:
    case = load_case(session, owner_id=user.id, analysis_id=analysis_id)
if case is None:
    st.error("This case was not found among your analyses.")
    st.stop()
if arriving or st.session_state.get(VIEWED_KEY) != case.id:
    _audit(case.id, Action.VIEW)
    st.session_state[VIEWED_KEY] = case.id

st.subheader(escape_markdown(case.case_reference))
acquired = f" · scan of {case.scan_date}" if case.scan_date else ""
corrected = (
    f" · reference corrected {case.references[0].created_at:%Y-%m-%d %H:%M} UTC"
    if len(case.references) > 1
    else ""
)
st.caption(
    f"Analysis #{case.id} · {case.created_at:%Y-%m-%d %H:%M} UTC{acquired}"
    f" · {len(case.slices)} slice(s) · {escape_markdown(case.source_summary)}{corrected}"
)
render_entered_in_error_banner(case, author_name=user.full_name)
with st.expander("Correct the record"):
    if case.entered_in_error:
        st.caption(
            "This analysis was marked entered in error, which is final: its record is closed."
        )
    else:
        render_reference_correction(case, owner_id=user.id, author_name=user.full_name)
        st.divider()
        render_entered_in_error_form(case, owner_id=user.id)
shown = render_case(case, key=f"case_{case.id}")
_downloads(case, shown)
if case.entered_in_error:
    st.caption("Follow-up comparison is not offered for an analysis entered in error.")
    baseline_id = None
else:
    baseline_id = render_comparison(user.id, case.id)
st.divider()
render_notes(case.id, owner_id=user.id, author_name=user.full_name, read_only=case.entered_in_error)
st.divider()
_reports(case, baseline_id)
