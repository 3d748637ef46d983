"""The server's log, written so that text from an uploaded file cannot forge a record.

A file's name, a DICOM header value or a library's error about a file reaches the log through
log messages and, as it is, through the text of an exception (``logger.exception`` writes the
exception's message and traceback). A line break in such text would start a line that reads
as a record of its own ("2026-01-01 INFO ..."). :class:`OneRecordFormatter` writes each record
as one head line, its message with control characters escaped (``\\n`` for a line break), and
the traceback, if any, below it with every line prefixed by :data:`CONTINUATION`, so a reader
or a log tool tells a traceback's lines, the exception's own text included, from a new record.

:func:`configure_logging` installs it for the app (``app.py``); the command line uses
:func:`stderr_handler` through ``logging.basicConfig`` (``brainloc.cli``).
"""

from __future__ import annotations

import logging
import re
import sys
import threading

#: How every line of a record after its first begins: a record's own first line begins with
#: its time, never with this.
CONTINUATION = "  | "
#: The app's record layout: time, level, logger, message.
APP_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: BrainLoc's own loggers, which :func:`configure_logging` lets write information records too:
#: the models loaded and their arithmetic, a generated cookie key, the database opened, a
#: refused sign-in cookie, and the traceback behind an upload refused as unreadable.
APP_LOGGERS = ("brainloc", "db", "ui")
#: The name of the handler :func:`configure_logging` installs, so it is installed once.
HANDLER_NAME = "brainloc"
_installing = threading.Lock()

# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators, which
# some log viewers break lines at. A traceback keeps its line feeds (CONTINUATION follows).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_LINE_FEED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    """``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\u2028``: the character as Python writes it."""
    return match.group().encode("unicode_escape").decode("ascii")


def one_line(text: str) -> str:
    """``text`` with every control character escaped, so it is exactly one line."""
    return _CONTROL.sub(_escaped, text)


def continuation_lines(text: str) -> str:
    """A traceback (or stack) as lines that each begin with :data:`CONTINUATION`; control
    characters other than the line feeds are escaped (a carriage return would let a terminal
    overwrite the prefix)."""
    text = _CONTROL_BUT_LINE_FEED.sub(_escaped, text.rstrip("\n"))
    return "\n".join(CONTINUATION + line for line in text.split("\n"))


class OneRecordFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose records cannot be forged by the text they carry: the
    formatted head line (the message with its arguments) is escaped to one line, and the
    exception's traceback and a stack follow on lines that begin with :data:`CONTINUATION`."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy: the record's exc_text is left alone for the other handlers of the record.
        head = logging.makeLogRecord(record.__dict__)
        head.msg, head.args = record.getMessage(), None
        head.exc_info = head.exc_text = head.stack_info = None
        text = one_line(super().format(head))
        if record.exc_info:
            text += "\n" + continuation_lines(self.formatException(record.exc_info))
        elif record.exc_text:
            text += "\n" + continuation_lines(record.exc_text)
        if record.stack_info:
            text += "\n" + continuation_lines(self.formatStack(record.stack_info))
        return text


class _StandardError(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes (as logging's own last-resort
    handler does), not as it was when the handler was made."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        """StreamHandler sets its stream when made; this handler has none of its own."""


def stderr_handler(fmt: str = APP_FORMAT) -> logging.Handler:
    """A handler that writes records to standard error with :class:`OneRecordFormatter`."""
    handler = _StandardError()
    handler.setFormatter(OneRecordFormatter(fmt))
    return handler


def configure_logging() -> None:
    """Send the app's records to standard error through :class:`OneRecordFormatter`, once per
    process (Streamlit runs ``app.py`` again on every interaction).

    BrainLoc's own loggers (:data:`APP_LOGGERS`) write information records as well; other
    libraries' keep the root logger's level (warnings and errors, as Python writes them when
    nothing is configured). Streamlit's own loggers keep their handler.
    """
    root = logging.getLogger()
    # Each browser session runs app.py in a thread of its own: two may start at once.
    with _installing:
        if any(handler.get_name() == HANDLER_NAME for handler in root.handlers):
            return
        handler = stderr_handler()
        handler.set_name(HANDLER_NAME)
        root.addHandler(handler)
        for name in APP_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET:  # an operator's own setting stays
                logger.setLevel(logging.INFO)
