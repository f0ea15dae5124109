"""Figures shared between the processes of one loop through its store.

The pipeline process publishes its evaluations and counters; each serving process
publishes its own counters and adds everyone else's, so /metrics on any process shows the
loop's totals. Rows of serving processes that died on this host are dropped (their counts
with them: a restarted process's counters restart at zero, as counters do).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

import orjson

from recloop.core.protocols import JoinedStore
from recloop.core.stats import LoopStats

EVALUATIONS_KEY = "pipeline.evaluations"
STATS_KEY = "pipeline.stats"
SERVE_STATS_PREFIX = "serve.stats."


def dead_local_worker(key: str) -> bool:
    """Is this ``serve.stats.<host>:<pid>:<id>`` row from a process of this host that is
    gone?"""
    host_pid = key[len(SERVE_STATS_PREFIX) :].rpartition(":")[0]
    host, _, pid = host_pid.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class SharedFigures:
    """One process's end of the exchange; writes only what changed, and a serving process
    at most every ``serve_write_seconds``: its counters change with every request, and a
    commit each tick into the loop's database costs the decisions appended there."""

    def __init__(
        self, store: JoinedStore, stats: LoopStats, serve_write_seconds: float = 1.0
    ) -> None:
        self.store = store
        self.stats = stats
        self.serve_write_seconds = serve_write_seconds
        self._serve_written_at = float("-inf")
        self.key = (
            f"{SERVE_STATS_PREFIX}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._written: dict[str, str] = {}

    def _put(self, key: str, value: Any) -> None:
        text = orjson.dumps(value).decode()
        if self._written.get(key) != text:
            self.store.set_state(key, text)
            self._written[key] = text

    def publish_pipeline(self, evaluations: dict[str, Any]) -> None:
        """Pipeline process: evaluations, counters and gauges."""
        counters, gauges = self.stats.local()
        self._put(EVALUATIONS_KEY, evaluations)
        self._put(STATS_KEY, {"counters": counters, "gauges": gauges})

    def exchange_serving(self) -> None:
        """Serving process: publish own counters, take in the pipeline's and the others'."""
        now = time.monotonic()
        if now - self._serve_written_at >= self.serve_write_seconds:
            counters, _ = self.stats.local()
            self._put(self.key, {"counters": counters})
            self._serve_written_at = now
        raw = self.store.get_state(STATS_KEY)
        published = [orjson.loads(raw)] if raw else []
        for key, value in self.store.states(SERVE_STATS_PREFIX).items():
            if key == self.key:
                continue
            if dead_local_worker(key):
                self.store.delete_state(key)
                continue
            published.append(orjson.loads(value))
        remote: dict[str, float] = {}
        gauges: dict[str, float] = {}
        for doc in published:
            for name, value in doc["counters"].items():
                remote[name] = remote.get(name, 0.0) + value
            gauges.update(doc.get("gauges", {}))
        self.stats.set_remote(remote, gauges)

    def evaluations(self) -> dict[str, Any] | None:
        """What the pipeline process last published, if anything."""
        raw = self.store.get_state(EVALUATIONS_KEY)
        return None if raw is None else dict(orjson.loads(raw))

    def retire(self) -> None:
        """A serving process closing: its counters leave the totals."""
        self.store.delete_state(self.key)
