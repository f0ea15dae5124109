"""A pipeline step that fails every tick (a database away for a minute) would log a
traceback 20 times a second per loop. The first failure is logged whole; while the same
error repeats, one line every ``every`` seconds says how many more there were.

A store that is away (``StoreUnavailableError``) is an operational fault the pipeline
rides out, not a bug: it is logged as one warning line without a traceback, and counted
as the same error by its reason, since its message changes from try to try (each
reconnect fails in its own words) and would otherwise log a traceback each time."""

from __future__ import annotations

import logging
import sys
import time

from recloop.core.errors import StoreUnavailableError


class FailureLog:
    def __init__(self, logger: logging.Logger, every: float = 10.0) -> None:
        self._log, self._every = logger, every
        self._last: dict[str, tuple[str, float, int]] = {}

    def failed(self, name: str) -> None:
        """Call from an ``except`` block: logs the exception being handled, or counts it."""
        exc = sys.exc_info()[1]
        away = isinstance(exc, StoreUnavailableError)
        if isinstance(exc, StoreUnavailableError):
            what = f"store unavailable ({exc.reason})"
        else:
            what = f"{type(exc).__name__}: {exc}"[:300]
        now = time.monotonic()
        last = self._last.get(name)
        if last is None or last[0] != what:
            if away:
                self._log.warning("pipeline step waits in loop %s: %s", name, exc)
            else:
                self._log.exception("pipeline step failed in loop %s", name)
            self._last[name] = (what, now, 0)
        elif now - last[1] >= self._every:
            self._log.error(
                "pipeline step in loop %s failed %d more times: %s", name, last[2] + 1, what
            )
            self._last[name] = (what, now, 0)
        else:
            self._last[name] = (what, last[1], last[2] + 1)

    def recovered(self, name: str) -> None:
        if self._last.pop(name, None) is not None:
            self._log.warning("pipeline step in loop %s works again", name)
