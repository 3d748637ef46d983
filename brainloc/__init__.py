"""BrainLoc engine: scan reading, preprocessing, models, inference, findings and reports.

Nothing in this package imports Streamlit; the pages, the CLIs, training and the
tests all call the same functions.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise for a clinician
# and hides our own error lines on stderr; an operator can still set this to 0.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
