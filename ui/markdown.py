"""Showing text that users or their files wrote inside Streamlit's Markdown elements.

``st.caption``, ``st.markdown``, ``st.error`` and the like render their text as Markdown: a
DICOM SeriesDescription, a file name or a full name holding ``![x](https://host/x.png)`` would
make the reader's browser fetch that address, and ``[text](https://host)`` would be a link in
the app's own words. Such text is escaped first, so it shows as written.
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def escape_markdown(text: str) -> str:
    """``text`` with Markdown syntax escaped, so that it renders literally."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
