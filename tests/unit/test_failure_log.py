"""The pipeline's failure log: a store away for a while is one warning line, however its
message changes from try to try; a bug is a traceback, logged once while it repeats."""

from __future__ import annotations

import logging

import pytest

from recloop.core.errors import StoreUnavailableError
from recloop.learning.failures import FailureLog

log = logging.getLogger("test-failure-log")


def _fail(failures: FailureLog, exc: Exception) -> None:
    try:
        raise exc
    except Exception:
        failures.failed("default")


def test_a_store_away_is_one_warning_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(log, every=60.0)
    with caplog.at_level(logging.INFO, logger=log.name):
        for n in range(5):  # each reconnect fails in its own words (was: 5 tracebacks)
            _fail(failures, StoreUnavailableError(f"connection refused (try {n})", "database"))
        failures.recovered("default")
    records = [(r.levelname, r.exc_info is not None) for r in caplog.records]
    assert records == [("WARNING", False), ("WARNING", False)]  # waits; works again
    assert "try 0" in caplog.records[0].getMessage()


def test_a_bug_is_a_traceback_once_while_it_repeats(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(log, every=60.0)
    with caplog.at_level(logging.INFO, logger=log.name):
        for _ in range(5):
            _fail(failures, ValueError("a bug"))
        _fail(failures, KeyError("another"))
    records = [(r.levelname, r.exc_info is not None) for r in caplog.records]
    assert records == [("ERROR", True), ("ERROR", True)]
