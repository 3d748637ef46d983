"""Plotly figures for the pages: the probability gauge, the case chart, history and model charts.

Pure functions: plain values in, a ``plotly.graph_objects.Figure`` out, so the pages only
hand them to ``st.plotly_chart`` and the tests can inspect their data.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from brainloc.findings_text import probability_bound, probability_percent

TUMOR_RED = "#c0392b"
CLEAR_GREEN = "#2e8b57"
ACCENT = "#1f4e79"
#: A 0-100 % axis with round ticks (as a second axis it would otherwise follow the first one's
#: grid: 19, 38, 57 ...) and a little headroom, so that a point at 100 % is not cut in half.
PERCENT_AXIS = {"range": [0, 104], "tickvals": [0, 20, 40, 60, 80, 100]}
#: A legend in one row above the plot: on the right it would cover a second y axis's labels.
TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}


def probability_gauge(probability: float, threshold: float) -> go.Figure:
    """A 0-100 % gauge of the tumor probability with the decision threshold marked."""
    if not 0.0 <= probability <= 1.0 or not 0.0 < threshold < 1.0:
        raise ValueError("probability must be in [0, 1] and threshold in (0, 1)")
    colour = TUMOR_RED if probability >= threshold else CLEAR_GREEN
    # Never a certain-looking "100 %" or "0 %": "> 99.9 %" and "< 0.1 %" instead.
    prefix = probability_bound(probability)
    figure = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=probability_percent(probability),
            number={"prefix": prefix, "suffix": " %"},
            title={"text": "Tumor probability"},
            gauge={
                "axis": {"range": [0, 100]},
                "bar": {"color": colour},
                "steps": [
                    {"range": [0, threshold * 100], "color": "#e8f3ec"},
                    {"range": [threshold * 100, 100], "color": "#f8e5e3"},
                ],
                "threshold": {
                    "line": {"color": "black", "width": 4},
                    "thickness": 0.9,
                    "value": threshold * 100,
                },
            },
        )
    )
    figure.update_layout(height=240, margin={"l": 30, "r": 30, "t": 50, "b": 10})
    return figure


def case_chart(
    probabilities: Sequence[float],
    areas_px: Sequence[int],
    threshold: float,
    selected: int | None = None,
) -> go.Figure:
    """Probability (line, left axis) and tumor area (bars, right axis) per slice.

    Slices are numbered from 1 on the x axis; ``selected`` is an index from 0.
    """
    if len(probabilities) != len(areas_px):
        raise ValueError("one probability and one area per slice are needed")
    slices = list(range(1, len(probabilities) + 1))
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(
        go.Bar(x=slices, y=list(areas_px), name="Tumor area (px)", marker_color="#e6a39b"),
        secondary_y=True,
    )
    figure.add_trace(
        go.Scatter(
            x=slices,
            y=[p * 100 for p in probabilities],
            name="Tumor probability (%)",
            mode="lines+markers",
            line={"color": ACCENT},
        ),
        secondary_y=False,
    )
    figure.add_hline(
        y=threshold * 100, line_dash="dash", line_color="black", annotation_text="threshold"
    )
    if selected is not None:
        figure.add_vline(x=selected + 1, line_color=TUMOR_RED, line_width=2)
    figure.update_yaxes(title_text="Probability (%)", secondary_y=False, **PERCENT_AXIS)
    figure.update_yaxes(title_text="Area (px)", secondary_y=True, rangemode="tozero")
    figure.update_xaxes(title_text="Slice")
    figure.update_layout(height=300, margin={"l": 40, "r": 40, "t": 40, "b": 40}, legend=TOP_LEGEND)
    return figure


def weekly_chart(frame: pd.DataFrame) -> go.Figure:
    """Analyses per week (bars) and the share called positive (line), from
    :func:`brainloc.history.weekly_summary`; the line has a gap at a week without analyses
    (its share is NaN: undefined, not 0 %)."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(
        go.Bar(
            x=[str(week) for week in frame["week"]],
            y=frame["analyses"],
            name="Analyses",
            marker_color=ACCENT,
        ),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=[str(week) for week in frame["week"]],
            y=frame["share_positive"] * 100,
            name="Share positive (%)",
            mode="lines+markers",
            line={"color": TUMOR_RED},
        ),
        secondary_y=True,
    )
    # Whole analyses only: with few of them, plotly's automatic ticks fall on 0.5, 1.5 ...
    most = int(frame["analyses"].max()) if len(frame) else 0
    figure.update_yaxes(
        title_text="Analyses",
        secondary_y=False,
        rangemode="tozero",
        tickformat="d",
        dtick=1 if most <= 5 else None,
    )
    figure.update_yaxes(title_text="Positive (%)", secondary_y=True, showgrid=False, **PERCENT_AXIS)
    # Weeks as categories: one bar per week, readable even when there is only one week.
    figure.update_xaxes(title_text="Week starting", type="category")
    figure.update_layout(height=320, margin={"l": 40, "r": 40, "t": 40, "b": 40}, legend=TOP_LEGEND)
    return figure


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> go.Figure:
    """A labelled confusion-matrix heatmap (rows: truth, columns: prediction)."""
    figure = go.Figure(
        go.Heatmap(
            z=[list(row) for row in matrix],
            x=[f"predicted {label}" for label in labels],
            y=[f"true {label}" for label in labels],
            text=[[str(value) for value in row] for row in matrix],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(height=320, margin={"l": 40, "r": 20, "t": 30, "b": 40})
    return figure


def roc_curve(fpr: Sequence[float], tpr: Sequence[float], auc: float | None = None) -> go.Figure:
    """ROC curve with the chance diagonal."""
    name = f"ROC (AUC {auc:.3f})" if auc is not None else "ROC"
    figure = go.Figure(
        [
            go.Scatter(x=list(fpr), y=list(tpr), mode="lines", name=name, line={"color": ACCENT}),
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="chance",
                line={"dash": "dot", "color": "grey"},
            ),
        ]
    )
    figure.update_xaxes(title_text="False positive rate", range=[0, 1])
    figure.update_yaxes(title_text="True positive rate", range=[0, 1.02])
    figure.update_layout(height=340, margin={"l": 40, "r": 20, "t": 30, "b": 40})
    return figure
