"""Keeps the server's pipeline process running, and says so when it cannot.

A pipeline child that dies (kill -9, an out-of-memory kill, a crash at start from bad
stored settings) would otherwise leave the server answering 2xx while nothing is joined
or learned. The supervisor notices within a poll, restarts the child with exponential
backoff, and keeps what health and readiness need: alive or not, since when, how often it
was restarted and how the last one ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from recloop.core.stats import LoopStats

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0
"""A child that ran this long before dying restarts after the first backoff again."""


class PipelineSupervisor:
    """Starts the child with ``start``, restarts it when it dies, stops it on ``close``."""

    def __init__(
        self,
        start: Callable[[], BaseProcess],
        stop: Callable[[BaseProcess], None],
        stats: LoopStats,
    ) -> None:
        self._start, self._stop, self._stats = start, stop, stats
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._backoff = FIRST_BACKOFF_SECONDS
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.down_since: float | None = None
        self._process = start()
        self._stats.set("pipeline_up", 1.0)
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="pipeline-watch", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid

    def alive(self) -> bool:
        with self._lock:
            return self._process.is_alive()

    def status(self) -> dict[str, Any]:
        """For /healthz and /readyz: the child's pid, whether it runs, its restarts."""
        with self._lock:
            alive = self._process.is_alive()
            down = self.down_since
        return {
            "mode": "process",
            "pid": self.pid,
            "alive": alive,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "down_seconds": None if down is None else round(time.monotonic() - down, 3),
        }

    def _watch(self) -> None:
        while not self._closing.wait(POLL_SECONDS):
            with self._lock:
                process = self._process
            if process.is_alive():
                continue
            self._on_death(process)

    def _on_death(self, process: BaseProcess) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self.last_exit_code = process.exitcode
            self._stats.inc("pipeline_deaths_total")
            self._stats.set("pipeline_up", 0.0)
            log.error("pipeline process %s died (exit code %s)", process.pid, process.exitcode)
            if now - self._started_at >= STABLE_SECONDS:
                self._backoff = FIRST_BACKOFF_SECONDS
        if self._closing.wait(self._backoff):
            return
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
        try:
            fresh = self._start()
        except Exception:  # e.g. out of processes: try again after a longer backoff
            log.exception("pipeline process could not be started")
            return
        with self._lock:
            self._process = fresh
            self._started_at = time.monotonic()
            self.down_since = None
        self.restarts += 1
        self._stats.inc("pipeline_restarts_total")
        self._stats.set("pipeline_up", 1.0)
        log.warning("pipeline process restarted as %s (restart %s)", fresh.pid, self.restarts)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        with self._lock:
            self._stop(self._process)
