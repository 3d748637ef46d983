"""BrainLoc engine: scan reading, preprocessing, models, inference, findings and reports.

Nothing in this package imports Streamlit; the pages, the CLIs, training and the
tests all call the same functions.
"""

__version__ = "0.1.0"
