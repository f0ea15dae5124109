"""The global half of the job: it meets every event in log order, keeps popularity, runs
``StreamProcessor.after_update`` and writes what it makes -- lists into the recommendation
store, user states and dead letters into the state view.

It is also the job's sink. Python functions get no checkpoint hook, so what waits to be
written is kept in managed state, and only a batch kept there survives a kill -9 between a
checkpoint and the write; a per-record Python sink would commit SQLite once per event, and
a FileSink would need a loader process and a checkpoint of delay. Replays after a restore
are harmless: the store's upserts are version-guarded, the view's idempotent.

Imports PyFlink (through :mod:`recloop.streaming.flink.operators`): only for the job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from recloop.core.types import BehaviourEvent, Recommendation
from recloop.settings import StreamSettings
from recloop.streaming.flink.operators import KeyedProcessFunction, Types, flink_state
from recloop.streaming.flink.state_view import STATE_VIEW, FlinkStateView
from recloop.streaming.popularity import DecayedPopularity
from recloop.streaming.state import UserState, UserStream

END_OF_TIME = 2**63 - 2  # an event-time timer here fires only at the end of bounded input


def _user_state(raw: dict[str, Any]) -> UserState:
    """``UserState.from_dict`` without its conversions (the JSON came from ``to_dict``):
    the global half reads only counts, recent items, version and times."""
    return UserState(
        raw["user_id"],
        raw["version"],
        raw["last_items"],
        raw["counts"],
        raw["first_seen"],
        raw["last_seen"],
        raw["session_start"],
        raw["sessions"],
        raw["activeness"],
    )


class Global(KeyedProcessFunction):  # type: ignore[misc]
    """The global half, meeting events in log order (by ``prev``; early ones wait in
    ``held``): popularity, trigger, policy. What it makes waits in managed state until
    written: lists every ``flush_ms`` (longer under load), user states and dead letters
    every ``view_ms`` (and at the end of input)."""

    def __init__(
        self,
        base: int,
        settings: dict[str, Any],
        data_dir: str,
        *,
        flush_ms: int,
        flush_events: int,
        view_ms: int,
    ) -> None:
        self.base = base  # the log offset just before the first event this job meets
        self.settings = settings
        self.data_dir = data_dir
        self.flush_ms = flush_ms
        self.flush_events = flush_events
        self.view_ms = view_ms

    def open(self, ctx: Any) -> None:
        from recloop.stores.factory import open_recommendations
        from recloop.streaming.service import make_processor

        stream_settings = StreamSettings(**self.settings)
        self.processor = make_processor(stream_settings)
        stream_dir = Path(self.data_dir) / "_stream"
        self.recs = open_recommendations(stream_settings, stream_dir)
        self.view = FlinkStateView(stream_dir / STATE_VIEW)
        desc = flink_state.MapStateDescriptor
        self.scores = ctx.get_map_state(desc("popularity", Types.STRING(), Types.DOUBLE()))
        self.meta = ctx.get_state(flink_state.ValueStateDescriptor("meta", Types.STRING()))
        self.held_state = ctx.get_map_state(desc("held", Types.LONG(), Types.STRING()))
        # user -> Recommendation JSON; user -> UserState JSON, "\\0" + event id -> dead
        # letter; each with a mirror here (the Recommendation objects themselves until
        # a restore)
        self.recs_state = ctx.get_map_state(desc("recs", Types.STRING(), Types.STRING()))
        self.users_state = ctx.get_map_state(desc("users", Types.STRING(), Types.STRING()))
        self.pending_recs: dict[str, Recommendation | str] = {}
        self.pending_users: dict[str, str | UserStream] = {}
        self.held: dict[int, str] = {}
        self.loaded = False
        self.anchor: float | None = None
        self.newest = 0.0
        self.last = self.base
        self.timer_at = 0  # the earliest flush timer set, and whether it is for lists
        self.recs_armed = False
        self.flushed_at = 0.0  # when the last flush ended (ms) and what it took
        self.flush_cost = 0.0
        self.viewed_at = time.time()
        self.last_popular = 0.0
        self.first_at = 0.0  # wall time of the first element since open (for rates)
        self.seen = 0

    def _load(self, ctx: Any) -> None:
        """After open: popularity, position and batches from managed state (a restore)."""
        self.loaded = True
        meta = self.meta.value()
        if meta:
            anchor, events, self.newest, self.last = orjson.loads(meta)
            restored = DecayedPopularity(
                self.processor.popularity.half_life_seconds,
                self.processor.popularity.weights,
                anchor,
                {k: float(v) for k, v in self.scores.items()},
                int(events),
            )
            self.processor.popularity.load(restored)
            self.anchor = anchor
        self.pending_recs = dict(self.recs_state.items())
        self.pending_users = dict(self.users_state.items())
        self.held = {int(k): v for k, v in self.held_state.items()}
        ctx.timer_service().register_event_time_timer(END_OF_TIME)
        self._arm(ctx)

    def _arm(self, ctx: Any) -> None:
        """A flush ``flush_ms`` from now, or later under load: flushing takes at most
        about 1/30 of the time, so batches grow when busy (a user's newest list is
        written once per batch: fewer rows per event)."""
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        if self.pending_recs:
            backoff = self.flushed_at + 30 * self.flush_cost - now
            at = now + max(self.flush_ms, min(int(backoff), 1000))
            self.recs_armed = True
        elif self.pending_users:
            at = int(self.viewed_at * 1000) + self.view_ms
        else:
            return
        if not self.timer_at or at < self.timer_at:  # a later one left set flushes too
            self.timer_at = at
            timers.register_processing_time_timer(at)

    def _decode(self, value: str) -> tuple[dict[str, Any], Any]:
        """(the event with its offsets, what :meth:`_apply` needs besides)."""
        kind, line, body = value.split("\t", 2)
        return orjson.loads(line), (kind, body)

    def _apply(self, raw: dict[str, Any], extra: Any) -> None:
        kind, body = extra
        self._step(kind, raw, body)

    def process_element(self, value: str, ctx: Any) -> Iterator[int]:
        """Meet events in log order (an early one waits in ``held`` for the one before
        it), apply each, then save the position and flush or arm the timer."""
        if not self.loaded:
            self._load(ctx)
        if not self.seen:
            self.first_at = time.time()
        self.seen += 1
        raw, extra = self._decode(value)
        offset, prev = int(raw["offset"]), int(raw["prev"])
        if offset <= self.last or prev in self.held:
            return iter(())  # read again: done already
        if prev != self.last:
            self.held[prev] = value
            self.held_state.put(prev, value)
            return iter(())
        self._apply(raw, extra)
        while self.last in self.held:
            value = self.held.pop(self.last)
            self.held_state.remove(self.last)
            self._apply(*self._decode(value))
        pop = self.processor.popularity
        self.meta.update(orjson.dumps([pop.anchor, pop.events, self.newest, self.last]).decode())
        if len(self.pending_recs) >= self.flush_events:
            self._flush(ctx)
            self._arm(ctx)
        elif not self.timer_at or (self.pending_recs and not self.recs_armed):
            self._arm(ctx)
        return iter(())

    def _step(self, kind: str, raw: dict[str, Any], body: str) -> None:
        self.last = int(raw["offset"])
        if kind == "l":
            key = "\0" + raw["event_id"]
            self.pending_users[key] = text = orjson.dumps(raw).decode()
            self.users_state.put(key, text)
        if kind != "a":
            return
        event = BehaviourEvent.from_dict(raw)
        rec = self.processor.after_update(_user_state(orjson.loads(body)), event)
        pop = self.processor.popularity
        if pop.anchor != self.anchor:  # first event, or a rebase: all scores moved
            self.anchor = pop.anchor
            self.scores.put_all(dict(pop.scaled))
        else:
            self.scores.put(event.item_id, pop.scaled[event.item_id])
        self.newest = max(self.newest, event.timestamp)
        user = event.user_id
        self.pending_users[user] = body
        self.users_state.put(user, body)
        if rec is not None:
            self.pending_recs[user] = rec
            self.recs_state.put(user, orjson.dumps(rec.to_dict()).decode())

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[int]:
        if not self.loaded:
            self._load(ctx)
        self._flush(ctx, final=timestamp >= END_OF_TIME)
        self.timer_at, self.recs_armed = 0, False
        self._arm(ctx)
        return iter(())

    def _flush(self, ctx: Any | None, final: bool = False) -> None:
        """Write the lists (and, when due, the user states); then forget them."""
        began = time.time()
        if self.pending_recs:
            recs = [
                r if isinstance(r, Recommendation) else Recommendation.from_dict(orjson.loads(r))
                for r in self.pending_recs.values()
            ]
            self.recs.put_many(recs, began)
            self.pending_recs = {}
            if ctx is not None:
                self.recs_state.clear()
        if final or began - self.viewed_at >= self.view_ms / 1000:
            self._write_view(final)
            self.pending_users = {}
            if ctx is not None:
                self.users_state.clear()
            self.viewed_at = time.time()
        if self.processor.popularity.anchor is not None and (
            final or began - self.last_popular >= 1.0
        ):
            self.recs.put_popular(self.processor.popular(self.newest), began)
            self.last_popular = began
        now = time.time()
        self.flushed_at = now * 1000
        self.flush_cost = (now - began) * 1000

    def _write_view(self, final: bool) -> None:
        users: list[tuple[str, str]] = []
        dead: list[tuple[str, str]] = []
        for key, text in self.pending_users.items():
            if isinstance(text, UserStream):
                users.append((key, orjson.dumps(text.state.to_dict()).decode()))
            elif key.startswith("\0"):
                dead.append((key[1:], text))
            else:
                users.append((key, text))
        meta: dict[str, Any] = {
            "runner": "flink",
            "offset": self.last,
            "newest_event_time": self.newest,
            "settings": self.settings,
            "first_element_at": self.first_at,
            "elements_since_open": self.seen,
            "flushed_at": time.time(),
        }
        if final or time.time() - self.last_popular >= 10.0:
            meta["popularity"] = self.processor.popularity.to_dict()
        self.view.write(users, dead, meta)

    def close(self) -> None:
        if self.pending_recs or self.pending_users:  # normally written at end of input
            self._flush(None, final=True)
        self.recs.close()
        self.view.close()
