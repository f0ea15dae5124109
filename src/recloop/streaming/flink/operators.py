"""The keyed users stage (``UserStream.add`` per user, at parallelism > 1) and the step that
keys a stream without a shuffle, with what the operators share.

This module imports PyFlink (its operators subclass PyFlink's functions): import it only
where the job is built or run, never from the package itself. The operators are module
classes, so PyFlink pickles them by reference; what each needs from the job (settings, data
dir, flush intervals) is given to its constructor and pickled with the instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from recloop.core.types import BehaviourEvent
from recloop.settings import StreamSettings
from recloop.streaming.flink.environment import pf
from recloop.streaming.state import UserStream

KeyedProcessFunction: Any = pf("datastream").KeyedProcessFunction
ProcessFunction: Any = pf("datastream").ProcessFunction
Row: Any = pf("common").Row
Types: Any = pf("common").Types
flink_state: Any = pf("datastream.state")

CACHE_USERS = 100_000
"""Decoded user streams kept per operator before the cache is emptied."""


def with_ttl(descriptor: Any, settings: dict[str, Any]) -> Any:
    """Flink's own state TTL (processing time since the last write) frees idle users'
    storage; the TTL's meaning -- an idle user starts afresh -- is ``UserStream.add``'s,
    by event time, the same in both runners."""
    ttl_ms = int(StreamSettings(**settings).ttl_seconds * 1000)
    config = (
        flink_state.StateTtlConfig.new_builder(pf("common.time").Time.milliseconds(ttl_ms))
        .update_ttl_on_create_and_write()
        .never_return_expired()
        .build()
    )
    descriptor.enable_time_to_live(config)
    return descriptor


class Users(KeyedProcessFunction):  # type: ignore[misc]
    """The keyed half: ``UserStream.add``, meeting each user's events in log order (an
    event whose ``prev_user`` has not come yet waits in ``held``). Emits, for every event,
    ``kind \\t line \\t UserState JSON`` (kind: applied, late or duplicate), so that the
    global half sees every offset."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def open(self, ctx: Any) -> None:
        from recloop.streaming.service import state_config

        self.cfg = state_config(StreamSettings(**self.settings))
        # "last-offset \t held-count \t UserState JSON \t pending JSON" (UserStream.to_dict)
        self.state = ctx.get_state(
            with_ttl(flink_state.ValueStateDescriptor("user", Types.STRING()), self.settings)
        )
        self.held = ctx.get_map_state(
            flink_state.MapStateDescriptor("held", Types.LONG(), Types.STRING())
        )
        self.cache: dict[str, list[Any]] = {}

    def process_element(self, line: str, ctx: Any) -> Iterator[str]:
        raw = orjson.loads(line)
        user = raw["user_id"]
        entry = self.cache.get(user)
        if entry is None:
            value = self.state.value()
            if value:
                last, held, state_json, pending_json = value.split("\t", 3)
                stream = UserStream.new(user)
                if state_json:  # else only held events so far
                    raw_stream = {
                        "state": orjson.loads(state_json),
                        "pending": orjson.loads(pending_json),
                    }
                    stream = UserStream.from_dict(raw_stream, self.cfg)
                entry = [int(last), int(held), stream, state_json, pending_json]
            else:
                entry = [0, 0, UserStream.new(user), "", "[]"]
            if len(self.cache) >= CACHE_USERS:
                self.cache.clear()
            self.cache[user] = entry
        offset, prev = int(raw["offset"]), int(raw["prev_user"])
        if offset <= entry[0]:
            return  # read again (a fresh job over an old spool): done already
        if prev != entry[0]:
            if not self.held.contains(prev):
                self.held.put(prev, line)
                entry[1] += 1
                self._save(entry)
            return
        yield self._place(entry, raw, line)
        while entry[1]:
            nxt = self.held.get(entry[0])
            if nxt is None:
                break
            self.held.remove(entry[0])
            entry[1] -= 1
            yield self._place(entry, orjson.loads(nxt), nxt)
        self._save(entry)

    def _save(self, entry: list[Any]) -> None:
        self.state.update(f"{entry[0]}\t{entry[1]}\t{entry[3]}\t{entry[4]}")

    def _place(self, entry: list[Any], raw: dict[str, Any], line: str) -> str:
        entry[0] = int(raw["offset"])
        stream: UserStream = entry[2]
        outcome = stream.add(BehaviourEvent.from_dict(raw), self.cfg)
        if outcome == "applied":
            entry[3] = orjson.dumps(stream.state.to_dict()).decode()
            entry[4] = orjson.dumps(stream.to_dict()["pending"]).decode()
            return f"a\t{line}\t{entry[3]}"
        return f"{outcome[0]}\t{line}\t"


class AddKey(ProcessFunction):  # type: ignore[misc]
    """``(key(value), value)`` rows: the first half of a ``key_by`` without a shuffle (the
    job's ``_forward_key_by``)."""

    def __init__(self, key: Callable[[Any], Any]) -> None:
        self.key = key

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        yield Row(self.key(value), value)
