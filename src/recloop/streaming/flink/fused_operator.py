"""The job at parallelism 1: both halves in one operator keyed by a constant.

Every keyed Python stage costs time per event in thread mode, and the two-stage form also
encoded the user state to pass it on and decoded event and state again downstream; fused,
the job runs more events per second (README, "Measurements behind the code"). Its state
(uid ``recloop-stream``) is not the two-stage form's (``recloop-users``/``recloop-global``),
so a checkpoint restores only into a job of the same form.

Imports PyFlink (through :mod:`recloop.streaming.flink.operators`): only for the job.
"""

from __future__ import annotations

from typing import Any

import orjson

from recloop.core.types import BehaviourEvent
from recloop.settings import StreamSettings
from recloop.streaming.flink.global_operator import Global
from recloop.streaming.flink.operators import CACHE_USERS, Types, flink_state, with_ttl
from recloop.streaming.state import UserStream


class Fused(Global):
    """Both halves in one operator (parallelism 1; keyed by a constant): events met in
    log order (by ``prev``), each user's stream in ``MapState`` (user -> ``UserStream``
    JSON) with the decoded streams cached, then the global half as in :class:`Global`.
    Users whose state changed wait in memory for the view (the stream objects
    themselves); after a restore every user is written to it again."""

    def open(self, ctx: Any) -> None:
        from recloop.streaming.service import state_config

        super().open(ctx)
        self.cfg = state_config(StreamSettings(**self.settings))
        desc = flink_state.MapStateDescriptor("streams", Types.STRING(), Types.STRING())
        self.streams = ctx.get_map_state(with_ttl(desc, self.settings))
        self.cache: dict[str, UserStream] = {}

    def _load(self, ctx: Any) -> None:
        super()._load(ctx)  # dead letters only: users are not mirrored (see below)
        for user, text in self.streams.items():
            state_json = orjson.dumps(orjson.loads(text)["state"]).decode()
            self.pending_users.setdefault(user, state_json)

    def _decode(self, value: str) -> tuple[dict[str, Any], Any]:
        return orjson.loads(value), None  # spool lines: the event itself

    def _apply(self, raw: dict[str, Any], extra: Any) -> None:
        self._place(raw)

    def _place(self, raw: dict[str, Any]) -> None:
        self.last = raw["offset"]
        user = raw["user_id"]
        stream = self.cache.get(user)
        if stream is None:
            text = self.streams.get(user)
            if text is None:
                stream = UserStream.new(user)
            else:
                stream = UserStream.from_dict(orjson.loads(text), self.cfg)
            if len(self.cache) >= CACHE_USERS:
                self.cache.clear()
            self.cache[user] = stream
        event = BehaviourEvent.from_dict(raw)
        outcome = stream.add(event, self.cfg)
        if outcome != "applied":
            if outcome == "late":
                key = "\0" + raw["event_id"]
                self.pending_users[key] = text = orjson.dumps(raw).decode()
                self.users_state.put(key, text)
            return
        self.streams.put(user, orjson.dumps(stream.to_dict()).decode())
        rec = self.processor.after_update(stream.state, event)
        pop = self.processor.popularity
        if pop.anchor != self.anchor:  # first event, or a rebase: all scores moved
            self.anchor = pop.anchor
            self.scores.put_all(dict(pop.scaled))
        else:
            self.scores.put(event.item_id, pop.scaled[event.item_id])
        self.newest = max(self.newest, event.timestamp)
        self.pending_users[user] = stream
        if rec is not None:
            self.pending_recs[user] = rec
            self.recs_state.put(user, orjson.dumps(rec.to_dict()).decode())
