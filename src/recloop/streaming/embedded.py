"""The embedded runner: drives the pure processor from the durable behaviour log.

Exactly-once effect on state: the runner reads events after its offset, processes them,
writes the recommendations they triggered (idempotent upserts, never replacing a newer
state version), and every ``snapshot_every_events`` events or ``snapshot_every_seconds``
commits the changed users' state, popularity, late events and the new offset in one
transaction. After a kill -9 it loads the last snapshot and replays the log from its
offset: the replayed events meet exactly the state they met the first time.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recloop.core.protocols import BehaviourLog, RecommendationStore, StreamStateStore
from recloop.core.types import BehaviourEvent, Recommendation
from recloop.streaming.popularity import DecayedPopularity
from recloop.streaming.processor import StreamProcessor
from recloop.streaming.state import UserStream

log = logging.getLogger(__name__)


@dataclass
class StreamCounters:
    events: int = 0
    state_updates: int = 0
    late: int = 0
    duplicates: int = 0
    triggers: int = 0
    recommendation_writes: int = 0
    snapshots: int = 0
    expired_users: int = 0
    failed: int = 0
    lag_seconds: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=10_000)
    )
    """End-to-end lag (event time -> recommendation written), recent samples."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "lag_seconds"}


class EmbeddedRunner:
    def __init__(
        self,
        processor: StreamProcessor,
        log_: BehaviourLog,
        snapshots: StreamStateStore,
        recommendations: RecommendationStore,
        *,
        batch: int = 1000,
        snapshot_every_events: int = 200_000,
        snapshot_every_seconds: float = 10.0,
        popular_every_seconds: float = 1.0,
        expire_every_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.processor = processor
        self.log = log_
        self.snapshots = snapshots
        self.recs = recommendations
        self.batch = batch
        self.snapshot_every_events = snapshot_every_events
        self.snapshot_every_seconds = snapshot_every_seconds
        self.popular_every_seconds = popular_every_seconds
        self.expire_every_seconds = expire_every_seconds
        self._last_expire = clock()
        self.clock = clock
        self.counters = StreamCounters()
        self._dirty: set[str] = set()
        self._forgotten: set[str] = set()
        self._dead: list[tuple[str, BehaviourEvent]] = []
        self._since_snapshot = 0
        self._last_snapshot = clock()
        self._last_popular = 0.0
        self._popular_events = -1
        self._newest_event_time = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.offset = self._restore()

    def _restore(self) -> int:
        offset, users, meta = self.snapshots.load()
        cfg = self.processor.state_config
        self.processor.users = {u: UserStream.from_dict(body, cfg) for u, body in users.items()}
        if "popularity" in meta:
            self.processor.popularity.load(DecayedPopularity.from_dict(meta["popularity"]))
        self._newest_event_time = float(meta.get("newest_event_time", 0.0))
        return offset

    def step(self) -> int:
        """Process one batch after the offset; returns how many events were read."""
        with self._lock:
            rows = self.log.read(self.offset, self.batch)
            if not rows:
                if self.processor.popularity.events != self._popular_events:
                    self._write_popular(self.clock())  # caught up: publish the fresh list
                self._maybe_snapshot(force=False)
                return 0
            recs: dict[str, Recommendation] = {}
            c = self.counters
            for offset, event in rows:
                c.events += 1
                self.offset = offset
                try:
                    step = self.processor.process(event)
                except Exception as exc:  # a poison event must not stall the stream
                    log.exception("stream: event %s failed", event.event_id)
                    c.failed += 1
                    self._dead.append((f"processing-error: {exc!r}"[:200], event))
                    continue
                if step.outcome == "applied":
                    c.state_updates += 1
                    self._dirty.add(event.user_id)
                    self._newest_event_time = max(self._newest_event_time, event.timestamp)
                    if step.recommendation is not None:
                        c.triggers += 1
                        recs[event.user_id] = step.recommendation
                elif step.outcome == "late":
                    c.late += 1
                    self._dead.append(("too-late", event))
                else:
                    c.duplicates += 1
            now = self.clock()
            if recs:
                written = self.recs.put_many(list(recs.values()), now)
                c.recommendation_writes += written
                c.lag_seconds.extend(now - r.event_time for r in recs.values())
            self._since_snapshot += len(rows)
            if now - self._last_popular >= self.popular_every_seconds:
                self._write_popular(now)
            if now - self._last_expire >= self.expire_every_seconds:
                self._expire_locked()
                self._last_expire = now
            self._maybe_snapshot(force=False)
            return len(rows)

    def _write_popular(self, now: float) -> None:
        at = self._newest_event_time or now
        self.recs.put_popular(self.processor.popular(at), now)
        self._last_popular = now
        self._popular_events = self.processor.popularity.events

    def _maybe_snapshot(self, force: bool) -> None:
        if not (force or self._dirty or self._dead or self._forgotten):
            return
        due = (
            self._since_snapshot >= self.snapshot_every_events
            or self.clock() - self._last_snapshot >= self.snapshot_every_seconds
        )
        if force or due:
            self.snapshot()

    def snapshot(self) -> None:
        """Commit changed users, popularity, late events and the offset together."""
        users_now = self.processor.users
        changed: list[tuple[str, dict[str, Any] | None]] = [
            (u, users_now[u].to_dict()) for u in self._dirty if u in users_now
        ]
        changed += [(u, None) for u in self._forgotten if u not in users_now]
        meta = {
            "popularity": self.processor.popularity.to_dict(),
            "newest_event_time": self._newest_event_time,
        }
        self.snapshots.save(self.offset, changed, meta, self._dead)
        self._dirty.clear()
        self._forgotten.clear()
        self._dead = []
        self._since_snapshot = 0
        self._last_snapshot = self.clock()
        self.counters.snapshots += 1

    def expire(self) -> int:
        """Forget users idle longer than the TTL (by the newest event time seen); the
        runner does it every ``expire_every_seconds`` by itself."""
        with self._lock:
            return self._expire_locked()

    def _expire_locked(self) -> int:
        gone = self.processor.expire(self._newest_event_time)
        self._forgotten.update(gone)
        self._dirty.difference_update(gone)
        self.counters.expired_users += len(gone)
        return len(gone)

    def run_until_idle(self) -> None:
        """Process everything logged so far, then snapshot (tests, replays)."""
        while self.step():
            pass
        with self._lock:
            self._write_popular(self.clock())
            self.snapshot()

    def start(self, idle_sleep: float = 0.002, max_idle_sleep: float = 0.05) -> None:
        """Poll the log in a background thread. An idle runner backs off from
        ``idle_sleep`` to ``max_idle_sleep`` (doubling), so a quiet stream does not tax the
        process serving decisions; ``wake()`` (called on in-process ingestion) cuts the
        wait short, so fresh events are processed at once."""

        def loop() -> None:
            sleep = idle_sleep
            while not self._stop.is_set():
                try:
                    if self.step() == 0:
                        self._wake.wait(sleep)
                        self._wake.clear()
                        sleep = min(sleep * 2.0, max_idle_sleep)
                    else:
                        sleep = idle_sleep
                except Exception:  # keep the stream alive; the offset was not advanced
                    log.exception("stream step failed")
                    self._stop.wait(0.5)

        self._thread = threading.Thread(target=loop, name="recloop-stream", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New events were logged: stop idling now."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self.snapshot()
