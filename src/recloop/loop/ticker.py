"""The background thread that runs a loop's step every tick, and keeps running through
failures (the next tick retries from the committed offsets)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from recloop.core.stats import LoopStats
from recloop.learning.failures import FailureLog

log = logging.getLogger(__name__)


class Ticker:
    def __init__(
        self, name: str, step: Callable[[], object], seconds: Callable[[], float], stats: LoopStats
    ) -> None:
        self.name = name
        self._step = step
        self._seconds = seconds
        self.stats = stats
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"recloop-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        quiet = FailureLog(log)
        while not self._stop.wait(self._seconds()):
            try:
                self._step()
                quiet.recovered(self.name)
            except Exception:  # keep serving; the next tick retries from committed offsets
                self.stats.inc("pipeline_errors_total")
                quiet.failed(self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
