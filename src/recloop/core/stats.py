"""Per-loop counters, read by /metrics at scrape time. Plain data: no metrics library here."""

from __future__ import annotations

import threading
from collections import defaultdict


class LoopStats:
    """Thread-safe named counters and gauges for one loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, float] = defaultdict(float)
        self._gauges: dict[str, float] = {}
        self._remote_counters: dict[str, float] = {}
        self._remote_gauges: dict[str, float] = {}

    def inc(self, name: str, amount: float = 1.0) -> None:
        with self._lock:
            self._counters[name] += amount

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def set_remote(self, counters: dict[str, float], gauges: dict[str, float]) -> None:
        """Figures published by another process working on the same loop (its pipeline)."""
        with self._lock:
            self._remote_counters = dict(counters)
            self._remote_gauges = dict(gauges)

    def counters(self) -> dict[str, float]:
        """Own counters plus the remote ones."""
        with self._lock:
            merged = dict(self._remote_counters)
            for name, value in self._counters.items():
                merged[name] = merged.get(name, 0.0) + value
            return merged

    def gauges(self) -> dict[str, float]:
        with self._lock:
            return {**self._remote_gauges, **self._gauges}

    def local(self) -> tuple[dict[str, float], dict[str, float]]:
        """This process's own counters and gauges (what it publishes)."""
        with self._lock:
            return dict(self._counters), dict(self._gauges)

    def get(self, name: str) -> float:
        counters = self.counters()
        if name in counters:
            return counters[name]
        return self.gauges().get(name, 0.0)
