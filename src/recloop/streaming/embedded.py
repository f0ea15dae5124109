"""The embedded runner: drives the pure processor from the durable behaviour log.

Exactly-once effect on state: the runner reads events after its offset, processes them,
writes the recommendations they triggered (idempotent upserts, never replacing a newer
state version), and every ``snapshot_every_events`` events or ``snapshot_every_seconds``
commits the changed users' state, popularity, late events and the new offset in one
transaction. After a kill -9 it loads the last snapshot and replays the log from its
offset: the replayed events meet exactly the state they met the first time.

No list is dropped when the recommendation store fails. The lists a batch triggered are
held until a write succeeds: the runner reads nothing further and commits no snapshot
while it holds any, so the committed offset never passes a list that was not written
(after a kill -9 the replay makes them again). When the store comes back empty (Redis
restarted or flushed: the ``lists`` marker is gone), every user's list is recomputed from
the state (``recloop.streaming.board``). An unreachable log or store pauses the runner:
one warning, a ``paused`` reason in its published status, retries with backoff.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from recloop.core.errors import StoreUnavailableError
from recloop.core.protocols import BehaviourLog, StreamStateStore, StreamStore
from recloop.core.types import BehaviourEvent, Recommendation
from recloop.streaming import board, forget_requests
from recloop.streaming.counters import StreamCounters
from recloop.streaming.polling import poll
from recloop.streaming.popularity import DecayedPopularity
from recloop.streaming.processor import StreamProcessor
from recloop.streaming.state import UserStream

log = logging.getLogger(__name__)


class EmbeddedRunner:
    def __init__(
        self,
        processor: StreamProcessor,
        log_: BehaviourLog,
        snapshots: StreamStateStore,
        recommendations: StreamStore,
        *,
        batch: int = 1000,
        snapshot_every_events: int = 200_000,
        snapshot_every_seconds: float = 10.0,
        popular_every_seconds: float = 1.0,
        expire_every_seconds: float = 60.0,
        check_every_seconds: float = 1.0,
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
        self.check_every_seconds = check_every_seconds
        """How often the store's ``lists`` marker is checked and the status published."""
        self._last_expire = clock()
        self.clock = clock
        self.counters = StreamCounters()
        self._dirty: set[str] = set()
        self._forgotten: set[str] = set()
        self._rewrite_dead = False
        """The recent dead letters changed (a user was forgotten): the snapshot rewrites them."""
        self._dead: list[tuple[str, BehaviourEvent]] = []
        self._recent_dead: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=board.KEEP_DEAD_LETTERS
        )
        self._unwritten: dict[str, Recommendation] = {}
        self._since_snapshot = 0
        self._last_snapshot = clock()
        self._last_popular = 0.0
        self._popular_events = -1
        self._last_check = -math.inf
        self._newest_event_time = 0.0
        self.paused: str | None = None
        """Why the runner cannot go on (log or store unreachable); None while it runs."""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.offset = self._restore()
        """The last event applied to the in-memory state."""
        self.committed_offset = self.offset
        """The offset of the last snapshot: where a restart resumes."""
        self.written_offset = self.offset
        """The last event whose lists are in the store (what ``processed`` reports)."""

    def _restore(self) -> int:
        offset, users, meta = self.snapshots.load()
        cfg = self.processor.state_config
        self.processor.users = {u: UserStream.from_dict(body, cfg) for u, body in users.items()}
        if "popularity" in meta:
            self.processor.popularity.load(DecayedPopularity.from_dict(meta["popularity"]))
        self._newest_event_time = float(meta.get("newest_event_time", 0.0))
        self._recent_dead.extend(meta.get("recent_dead_letters", ()))
        return offset

    def step(self) -> int:
        """Process one batch after the offset; returns how many events were read. Raises
        ``StoreUnavailableError`` (nothing further read) while the log or store is out."""
        with self._lock:
            now = self.clock()
            self._flush(now)  # lists an earlier write failed to store: first, or nothing moves
            if now - self._last_check >= self.check_every_seconds:
                self._check_lists(now)
                self._serve_forget_requests()
                self._publish_status(now)
                self._last_check = now
            rows = self.log.read(self.offset, self.batch)
            if not rows:
                if self.processor.popularity.events != self._popular_events:
                    self._write_popular(self.clock())  # caught up: publish the fresh list
                self._maybe_snapshot(force=False)
                return 0
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
                        self._unwritten[event.user_id] = step.recommendation
                elif step.outcome == "late":
                    c.late += 1
                    self._dead.append(("too-late", event))
                else:
                    c.duplicates += 1
            now = self.clock()
            self._since_snapshot += len(rows)
            self._flush(now)
            if now - self._last_popular >= self.popular_every_seconds:
                self._write_popular(now)
            if now - self._last_expire >= self.expire_every_seconds:
                self._expire_locked()
                self._last_expire = now
            self._maybe_snapshot(force=False)
            return len(rows)

    def _flush(self, now: float) -> None:
        """Write the held lists; they stay held (and the offset unwritten) if it fails."""
        if self._unwritten:
            recs = list(self._unwritten.values())
            self.counters.recommendation_writes += self.recs.put_many(recs, now)
            self.counters.lag_seconds.extend(now - r.event_time for r in recs)
            self._unwritten.clear()
        self.written_offset = self.offset

    def _check_lists(self, now: float) -> None:
        if not board.lists_ready(self.recs):
            self.rebuild(now)

    def rebuild(self, now: float | None = None) -> int:
        """Recompute every user's list from the state (the store lost them); returns how
        many were written. Called with the lock held (``step``) or before ``start``."""
        now = self.clock() if now is None else now
        began = time.monotonic()
        mark = board.begin_rebuild(self.recs, uuid.uuid4().hex)
        written, failed, chunk = 0, 0, []
        processor = self.processor
        for stream in list(processor.users.values()):
            state = stream.state
            if state.events < processor.trigger.min_events:
                continue
            try:
                chunk.append(processor.recommend(state, state.last_seen or now))
            except Exception:  # the event that made it failed too: it is dead-lettered
                failed += 1
                continue
            if len(chunk) >= 1000:
                written += self.recs.put_many(chunk, now)
                chunk = []
        written += self.recs.put_many(chunk, now) if chunk else 0
        self._unwritten.clear()  # the state they came from was just written whole
        self.written_offset = self.offset
        self._write_popular(now)
        board.publish_dead_letters(self.recs, list(self._recent_dead))
        board.end_rebuild(self.recs, mark)
        self.counters.rebuilds += 1
        self.counters.rebuilt_lists += written
        if processor.users:
            log.warning(
                "stream: the recommendation store had lost its lists (restarted or flushed): "
                "recomputed %d users' lists from the state in %.2f s (%d failed)",
                written, time.monotonic() - began, failed,
            )  # fmt: skip
        return written

    def _write_popular(self, now: float) -> None:
        at = self._newest_event_time or now
        self.recs.put_popular(self.processor.popular(at), now)
        self._last_popular = now
        self._popular_events = self.processor.popularity.events

    def status(self) -> dict[str, Any]:
        """What servers report as the stream's progress (published to the store)."""
        lags = self.counters.lags()
        return {
            "processed_offset": self.written_offset,
            "applied_offset": self.offset,
            "committed_offset": self.committed_offset,
            "users": len(self.processor.users),
            "paused": self.paused,
            "updated_at": self.clock(),
            "counters": self.counters.as_dict(),
            "lag_seconds_p50": lags[len(lags) // 2] if lags else None,
            "lag_seconds_p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
        }

    def _publish_status(self, now: float) -> None:
        board.publish_status(self.recs, self.status())

    def _maybe_snapshot(self, force: bool) -> None:
        if self._unwritten or not (force or self._dirty or self._dead or self._forgotten):
            return
        due = (
            self._since_snapshot >= self.snapshot_every_events
            or self.clock() - self._last_snapshot >= self.snapshot_every_seconds
        )
        if force or due:
            self.snapshot()

    def snapshot(self) -> None:
        """Commit changed users, popularity, late events and the offset together. Not
        while lists are held unwritten: the replay from the last snapshot makes them."""
        if self._unwritten:
            log.warning("stream: snapshot skipped: %d lists not written", len(self._unwritten))
            return
        users_now = self.processor.users
        changed: list[tuple[str, dict[str, Any] | None]] = [
            (u, users_now[u].to_dict()) for u in self._dirty if u in users_now
        ]
        changed += [(u, None) for u in self._forgotten if u not in users_now]
        meta: dict[str, Any] = {
            "popularity": self.processor.popularity.to_dict(),
            "newest_event_time": self._newest_event_time,
        }
        letters = [{"reason": reason, "event": e.to_dict()} for reason, e in self._dead]
        if letters or self._rewrite_dead:  # the newest few, for servers elsewhere
            recent = [*self._recent_dead, *letters][-board.KEEP_DEAD_LETTERS :]
            meta["recent_dead_letters"] = recent
        self.snapshots.save(self.offset, changed, meta, self._dead)
        self.committed_offset = self.offset
        self._recent_dead.extend(letters)
        self._dirty.clear()
        self._forgotten.clear()
        self._rewrite_dead = False
        self._dead = []
        self._since_snapshot = 0
        self._last_snapshot = self.clock()
        self.counters.snapshots += 1
        if letters:
            try:
                board.publish_dead_letters(self.recs, list(self._recent_dead))
            except StoreUnavailableError:  # committed; a rebuild publishes them again
                self._last_check = -math.inf

    def forget(self, user_id: str) -> dict[str, int]:
        """Privacy: drop one user's state, held list and dead letters, and commit that at
        once (the caller has deleted the user's events from the log first, so neither a
        restart nor a replay brings the user back). Raises ``StoreUnavailableError`` when
        the snapshot cannot be committed now (lists held unwritten): ask again."""
        with self._lock:
            return self._forget_locked(user_id)

    def _forget_locked(self, user_id: str) -> dict[str, int]:
        state = int(self.processor.users.pop(user_id, None) is not None)
        self._dirty.discard(user_id)
        self._unwritten.pop(user_id, None)
        self._forgotten.add(user_id)
        self._dead = [(r, e) for r, e in self._dead if e.user_id != user_id]
        kept = [d for d in self._recent_dead if d.get("event", {}).get("user_id") != user_id]
        dead = published = len(self._recent_dead) - len(kept)
        if published:
            self._recent_dead.clear()
            self._recent_dead.extend(kept)
            self._rewrite_dead = True
        forget_rows = getattr(self.snapshots, "forget_user", None)  # SqliteStreamState's
        if forget_rows is not None:
            rows, letters = forget_rows(user_id)
            state, dead = max(state, rows), max(dead, letters)  # the table holds them all
        recs = self.recs.delete(user_id)
        self.snapshot()
        if user_id in self._forgotten:  # the snapshot was skipped: not committed yet
            raise StoreUnavailableError(
                "the stream holds lists the recommendation store has not taken yet; "
                "the user is forgotten in memory, ask again to commit it",
                reason="lists-unwritten",
            )
        if published:
            board.publish_dead_letters(self.recs, list(self._recent_dead))
        return {"state": state, "recommendations": recs, "dead_letters": dead}

    def _serve_forget_requests(self) -> None:
        """Forget the users that servers without the runner asked for (``forget_requests``)."""
        for req in forget_requests.pending(self.recs):
            result = self._forget_locked(str(req["user_id"]))
            forget_requests.done(self.recs, str(req["token"]), result)

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
            self._publish_status(self.clock())

    def _pause(self, exc: StoreUnavailableError) -> None:
        """The log or the store is out: say so once (no traceback), publish it if the
        store still answers, and let the caller retry."""
        if self.paused is None:
            self.counters.pauses += 1
            log.warning("stream paused, retrying: %s", exc)
        self.paused = str(exc)[:300]
        self._last_check = -math.inf  # on the way back: check the marker at once
        with contextlib.suppress(Exception), self._lock:  # the store may be the one out
            self._publish_status(self.clock())

    def _resumed(self) -> None:
        if self.paused is None:
            return
        log.warning("stream resumed (it was paused: %s)", self.paused)
        self.paused = None

    def start(self, idle_sleep: float = 0.002, max_idle_sleep: float = 0.05) -> None:
        """Poll the log in a background thread (``recloop.streaming.polling``: backs off
        while idle, ``wake()`` cuts the wait short, pauses while the log or store is out)."""
        self._thread = threading.Thread(
            target=poll,
            args=(self.step, self._stop, self._wake),
            kwargs={
                "on_pause": self._pause,
                "on_resume": self._resumed,
                "idle_sleep": idle_sleep,
                "max_idle_sleep": max_idle_sleep,
            },
            name="recloop-stream",
            daemon=True,
        )
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
            try:
                self._flush(self.clock())
            except StoreUnavailableError as exc:
                log.warning("stream stopping with lists unwritten (replayed at restart): %s", exc)
            self.snapshot()
            self.paused = "stopped"
            with contextlib.suppress(StoreUnavailableError):
                self._publish_status(self.clock())
