"""AppTests of the history, recent-activity and model-card pages."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from brainloc.settings import get_settings
from db import clinical_activity
from db.audit import Action
from db.engine import get_engine
from db.models import Analysis
from tests.pages.workflow_fixtures import *  # noqa: F403 - fixtures
from tests.pages.workflow_fixtures import clear_png, open_page
from ui.markdown import escape_markdown


def _texts(elements) -> str:
    """The elements' text as shown: Markdown escapes (text users wrote, ui.markdown) undone."""
    return re.sub(r"\\(.)", r"\1", " | ".join(str(element.value) for element in elements))


def _table(at):
    return at.dataframe[0].value


def _backdate(clinic, analysis_id, days):
    with Session(get_engine(clinic.settings.database_url)) as session:
        analysis = session.get(Analysis, analysis_id)
        analysis.created_at = datetime.now(UTC) - timedelta(days=days)
        session.add(analysis)
        session.commit()


def test_history_lists_only_own_cases_and_filters(clinic):
    old = clinic.add_analysis(clinic.alice, "OLD-TUMOR")
    clear = clinic.add_analysis(clinic.alice, "CLEAR-1", clear_png())
    clinic.add_analysis(clinic.bob, "BOB-CASE")
    _backdate(clinic, old, 20)
    at = open_page("history.py", clinic.alice)
    assert not at.exception
    assert set(_table(at)["case_reference"]) == {"OLD-TUMOR", "CLEAR-1"}
    at = at.selectbox(key="history_decision").set_value("no tumor").run()
    assert list(_table(at)["id"]) == [clear]
    at = at.selectbox(key="history_decision").set_value("all").run()
    at = at.text_input(key="history_text").set_value("old").run()
    assert list(_table(at)["case_reference"]) == ["OLD-TUMOR"]
    at = at.text_input(key="history_text").set_value("").run()
    at = at.slider(key="history_probability").set_value((90, 100)).run()
    assert list(_table(at)["case_reference"]) == ["OLD-TUMOR"]
    at = at.slider(key="history_probability").set_value((0, 100)).run()
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date()
    at = at.date_input(key="history_dates").set_value((week_ago, datetime.now(UTC).date())).run()
    assert list(_table(at)["case_reference"]) == ["CLEAR-1"]
    assert "BOB-CASE" not in str(at._tree)


def test_history_sorts_opens_a_case_exports_csv_and_charts(clinic):
    first = clinic.add_analysis(clinic.alice, "B-SECOND")
    clinic.add_analysis(clinic.alice, "A-FIRST", clear_png())
    at = open_page("history.py", clinic.alice)
    at = at.selectbox(key="history_sort").set_value("case_reference").run()
    at = at.toggle(key="history_desc").set_value(False).run()
    assert list(_table(at)["case_reference"]) == ["A-FIRST", "B-SECOND"]
    at = at.selectbox(key="history_open").set_value(first).run()
    link = at.get("page_link")[-1].proto
    assert link.page.endswith("case") and f"id={first}" in link.query_string
    assert len(at.get("plotly_chart")) == 1
    at = at.download_button(key="history_csv").click().run()
    assert not at.exception
    with Session(get_engine(clinic.settings.database_url)) as session:
        items = clinical_activity.recent_activity(session, owner_id=clinic.alice)
    assert items[0].action == Action.EXPORT and items[0].detail["rows"] == 2


def test_history_table_selection_opens_a_case_without_overriding_the_picker(clinic):
    first = clinic.add_analysis(clinic.alice, "A-FIRST")
    second = clinic.add_analysis(clinic.alice, "B-SECOND", clear_png())
    at = open_page("history.py", clinic.alice)
    at = at.selectbox(key="history_sort").set_value("case_reference").run()
    at = at.toggle(key="history_desc").set_value(False).run()
    assert list(_table(at)["id"]) == [first, second]
    # Streamlit's programmatic selection: the state the browser sends while a row is selected.
    at.session_state["history_table"] = {"selection": {"rows": [0]}}
    at = at.run()
    assert at.selectbox(key="history_open").value == first
    # The row stays selected in the table; choosing another case here must stick.
    at = at.selectbox(key="history_open").set_value(second).run()
    assert at.selectbox(key="history_open").value == second
    at = at.text_input(key="history_text").set_value("-").run()
    assert at.selectbox(key="history_open").value == second
    assert f"id={second}" in at.get("page_link")[-1].proto.query_string
    # A new selection in the table is applied again.
    at.session_state["history_table"] = {"selection": {"rows": [1]}}
    at = at.run()
    assert at.selectbox(key="history_open").value == second
    at.session_state["history_table"] = {"selection": {"rows": [0]}}
    at = at.run()
    assert not at.exception
    assert at.selectbox(key="history_open").value == first


def test_history_without_analyses_says_so(clinic):
    at = open_page("history.py", clinic.bob)
    assert not at.exception
    assert "No analyses" in _texts(at.info)


#: A case reference is free text: as Markdown it would fetch an image and make a link.
MARKDOWN_REFERENCE = "**LOUD** ![x](https://tracker.example/x.png) [site](https://example.org)"


def test_a_case_reference_is_shown_as_written_in_the_activity_and_history_links(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, MARKDOWN_REFERENCE)
    at = open_page("activity.py", clinic.alice)
    (link,) = [element.proto for element in at.get("page_link")]
    assert link.label == f"Analysed {escape_markdown(MARKDOWN_REFERENCE)} (#{analysis_id})"
    at = open_page("history.py", clinic.alice)
    at = at.selectbox(key="history_open").set_value(analysis_id).run()
    link = at.get("page_link")[-1].proto
    assert link.label == f"Open {escape_markdown(MARKDOWN_REFERENCE)} (#{analysis_id})"


def test_activity_lists_own_actions_newest_first_with_case_links(clinic):
    analysis_id = clinic.add_analysis(clinic.alice, "ACT-CASE")
    clinic.add_analysis(clinic.bob, "BOB-ONLY")
    open_page("case.py", clinic.alice, {"id": str(analysis_id)})
    at = open_page("activity.py", clinic.alice)
    assert not at.exception
    links = [element.proto for element in at.get("page_link")]
    assert [link.label.split(" ")[0] for link in links] == ["Opened", "Analysed"]
    assert all(f"id={analysis_id}" in link.query_string for link in links)
    assert "BOB-ONLY" not in str(at._tree)
    at = open_page("activity.py", clinic.bob)
    assert "ACT-CASE" not in str(at._tree)


def test_model_card_shows_metadata_metrics_and_charts(clinic, tmp_path, monkeypatch):
    from tests.brainloc.conftest import build_tiny_models

    models = build_tiny_models(tmp_path / "models")
    meta = json.loads((models / "classifier.json").read_text())
    meta["architecture"] = "Tiny test network"
    meta["metrics"] = {
        "test": {
            "accuracy": 0.97,
            "roc_auc": 0.99,
            "confusion_matrix": {"tp": 40, "fn": 2, "fp": 1, "tn": 57},
            "roc_curve": {"fpr": [0, 0.1, 1], "tpr": [0, 0.9, 1], "threshold": [1, 0.5, 0]},
            "sensitivity_by_tumor_size": [
                {"area_percent": "<0.5", "tumor_slices": 8, "called": 6, "sensitivity": 0.75}
            ],
        }
    }
    (models / "classifier.json").write_text(json.dumps(meta))
    seg_meta = json.loads((models / "segmenter.json").read_text())
    seg_meta["metrics"] = {
        "out_of_fold": {"cases": 75, "dice_per_volume_mean": 0.8495, "dice_per_volume_median": 0.87}
    }
    (models / "segmenter.json").write_text(json.dumps(seg_meta))
    (models / "README.md").write_text("# Tiny models\n\nTrained on nothing at all.")
    monkeypatch.setenv("BRAINLOC_MODELS_DIR", str(models))
    monkeypatch.setenv("BRAINLOC_INFERENCE_PRECISION", "bfloat16")
    get_settings.cache_clear()
    at = open_page("model_card.py", clinic.alice)
    assert not at.exception
    assert "tiny-classifier v0.0.1" in _texts(at.header)
    assert "compute in bfloat16 (set by BRAINLOC_INFERENCE_PRECISION" in _texts(at.caption)
    assert [m.label for m in at.metric][:2] == ["Accuracy", "ROC AUC"]
    assert len(at.get("plotly_chart")) == 2  # confusion matrix and ROC of the classifier
    assert "Tiny test network" in _texts(at.markdown)
    assert "Decision.** A slice is called tumor when P(tumor) ≥" in _texts(at.markdown)
    assert "does not replace" in _texts(at.info)
    assert "Trained on nothing at all." in _texts(at.markdown)
    assert (
        "out of fold over 75 development patients, pipeline Dice per volume 0.850 (median 0.870)"
        in _texts(at.markdown)
    )
    (table,) = at.dataframe
    assert table.value.to_dict("records") == [
        {"tumor area (% of the slice)": "<0.5", "test patients": "6 of 8 (75%)"}
    ]


def test_model_card_without_models_warns(clinic, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINLOC_MODELS_DIR", str(tmp_path / "none"))
    get_settings.cache_clear()
    at = open_page("model_card.py", clinic.alice)
    assert not at.exception
    assert "not available" in _texts(at.warning)


def test_more_matches_than_the_history_holds_are_said_not_hidden(clinic, monkeypatch):
    from db import clinical

    monkeypatch.setattr(clinical, "HISTORY_LIMIT", 2)
    monkeypatch.setattr(clinical, "PICKER_LIMIT", 2)
    for number in range(3):
        clinic.add_analysis(clinic.alice, f"CASE-{number}")
    at = open_page("history.py", clinic.alice)
    assert not at.exception
    assert len(_table(at)) == 2
    assert "More than 2 analyses match" in _texts(at.warning)
    at = at.text_input(key="history_text").set_value("case-1").run()
    assert len(_table(at)) == 1 and not at.warning
    at = open_page("case.py", clinic.alice)
    assert "newest 2 analyses are listed" in _texts(at.caption)
