"""The server's log: text from an uploaded file, in a message or in an exception's text, cannot
forge a record (brainloc.log_format)."""

from __future__ import annotations

import logging
import re

import pytest

from brainloc.log_format import (
    APP_LOGGERS,
    CONTINUATION,
    HANDLER_NAME,
    configure_logging,
    stderr_handler,
)
from brainloc.scans import ScanError

FORGED = "\n2026-01-01 INFO forged"
#: A record's first line as APP_FORMAT writes it: its time, then level and logger.
HEAD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


@pytest.fixture
def server_log(capsys):
    """A real logger writing through the app's handler; returns a function that gives the
    lines written so far to standard error."""
    logger = logging.getLogger("tests.log_format")
    handler = stderr_handler()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, lambda: capsys.readouterr().err.splitlines()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def _assert_one_record(lines: list[str]) -> None:
    """Exactly one line begins like a record; every other one is a continuation."""
    assert HEAD.match(lines[0]), lines
    assert all(line.startswith(CONTINUATION) for line in lines[1:]), lines


def test_an_exception_whose_text_holds_a_line_break_stays_one_record(server_log):
    logger, written = server_log
    try:
        try:
            raise ScanError(f"IM0001: a header value of 'AX FLAIR{FORGED}'")
        except ScanError as exc:
            raise RuntimeError(f"reading failed{FORGED}") from exc
    except RuntimeError:
        logger.exception("analysis failed")
    lines = written()
    _assert_one_record(lines)
    assert lines[0].endswith(" ERROR tests.log_format: analysis failed")
    assert lines[1] == f"{CONTINUATION}Traceback (most recent call last):"
    # Both exceptions of the chain, their text included, are there to read, each forged
    # "record" a continuation line.
    assert f"{CONTINUATION}brainloc.scans.ScanError: IM0001: a header value of 'AX FLAIR" in lines
    assert f"{CONTINUATION}RuntimeError: reading failed" in lines
    assert lines.count(f"{CONTINUATION}2026-01-01 INFO forged'") == 1
    assert lines.count(f"{CONTINUATION}2026-01-01 INFO forged") == 1
    assert not [line for line in lines if line.startswith("2026-01-01")]


def test_a_message_and_its_arguments_are_escaped_to_one_line(server_log):
    logger, written = server_log
    logger.warning("upload %s refused\r", f"scan.png{FORGED}\x1b[2J\u2028")
    (line,) = written()
    assert line.endswith(
        r" WARNING tests.log_format: upload scan.png\n2026-01-01 INFO forged\x1b[2J\u2028 "
        r"refused\r"
    )


def test_a_carriage_return_in_a_traceback_cannot_overwrite_its_prefix(server_log):
    logger, written = server_log
    try:
        raise ValueError("name\r2026-01-01 INFO forged")
    except ValueError:
        logger.error("failed", exc_info=True)
    lines = written()
    _assert_one_record(lines)
    assert lines[-1] == rf"{CONTINUATION}ValueError: name\r2026-01-01 INFO forged"


def test_the_record_itself_is_left_as_it_was_for_other_handlers(server_log, caplog):
    logger, written = server_log
    logger.propagate = True  # caplog's handler sits on the root logger
    try:
        raise ValueError(f"bad{FORGED}")
    except ValueError:
        logger.exception("failed %s", "x\ny")
    record = [r for r in caplog.records if r.name == "tests.log_format"][-1]
    assert record.getMessage() == "failed x\ny"
    assert record.exc_info[1].args == (f"bad{FORGED}",)
    assert "\n2026-01-01 INFO forged" in caplog.text
    _assert_one_record(written())


def test_the_app_logs_its_own_information_records_and_not_other_libraries(capsys):
    """An upload refused as unreadable is explained by the traceback logged at INFO
    (``brainloc.scans.readable``); before, the app logged warnings and errors only."""
    from brainloc.scans import readable

    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in APP_LOGGERS}
    try:
        configure_logging()
        with pytest.raises(ScanError, match="truncated or corrupt"), readable("scan.dcm"):
            raise KeyError("tag (0028,0010) missing")
        logging.getLogger("PIL.PngImagePlugin").info("chunk")  # another library: not logged
        lines = capsys.readouterr().err.splitlines()
        assert any(" INFO brainloc.scans: unreadable upload 'scan.dcm'" in line for line in lines)
        assert f"{CONTINUATION}KeyError: 'tag (0028,0010) missing'" in lines
        assert not any("chunk" in line for line in lines)
    finally:
        for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
            root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_the_app_installs_the_handler_once(capsys):
    root = logging.getLogger()
    try:
        configure_logging()
        configure_logging()
        ours = [handler for handler in root.handlers if handler.get_name() == HANDLER_NAME]
        assert len(ours) == 1
        try:
            raise OSError(f"disk{FORGED}")
        except OSError:
            logging.getLogger("tests.log_format.app").exception("saving failed")
        lines = capsys.readouterr().err.splitlines()
        _assert_one_record(lines)
        assert f"{CONTINUATION}2026-01-01 INFO forged" in lines
    finally:
        for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
            root.removeHandler(handler)
