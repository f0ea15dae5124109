"""What the stream runner publishes beside the lists, for the servers that only serve.

A server started with ``stream.runner = "external"`` has no runner and, on another machine,
no copy of the runner's ``state.db``: the one store it shares with the runner is the
recommendation store (Redis, or ``recs.db`` in a shared data directory). So the runner
publishes there, under meta keys no user id can take:

* ``runner``: its progress (offsets, users, counters, whether it is paused and why), every
  second and at each snapshot, with the time it was written so a silent runner shows;
* ``dead_letters``: the most recent dead letters it committed (all of them stay in its
  ``state.db``);
* ``lists``: the marker that says the store holds every list. Redis here keeps nothing on
  disk, so a restart (or a flush) loses the lists, and a user with no new event would get
  the popular fallback for good. The runner checks the marker every second; when it is
  gone it recomputes every user's list from its state, marking the rebuild ``building:T``
  first and ``ready:T`` after, only if the marker is still its own (a store lost again
  mid-rebuild, or a runner killed mid-rebuild, leaves no ``ready`` marker: it rebuilds
  again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from recloop.core.errors import StoreUnavailableError
from recloop.core.protocols import StreamStore

STATUS_KEY = "runner"
DEAD_LETTERS_KEY = "dead_letters"
LISTS_KEY = "lists"
KEEP_DEAD_LETTERS = 1000
"""Dead letters the runner publishes (and keeps in its snapshot meta), the newest."""


def lists_ready(store: StreamStore) -> bool:
    """True while the store still holds the lists the runner wrote (the marker is there)."""
    mark = store.get_meta(LISTS_KEY)
    return mark is not None and mark.startswith(b"ready:")


def begin_rebuild(store: StreamStore, token: str) -> bytes:
    mark = b"building:" + token.encode()
    store.put_meta(LISTS_KEY, mark)
    return mark


def end_rebuild(store: StreamStore, mark: bytes) -> None:
    ready = b"ready:" + mark.removeprefix(b"building:")
    if not store.swap_meta(LISTS_KEY, mark, ready):
        raise StoreUnavailableError(
            "the recommendation store lost its data again during a rebuild", reason="lost"
        )


def publish_status(store: StreamStore, status: dict[str, Any]) -> None:
    store.put_meta(STATUS_KEY, orjson.dumps(status))


def read_status(store: StreamStore) -> dict[str, Any] | None:
    raw = store.get_meta(STATUS_KEY)
    if raw is None:
        return None
    status: dict[str, Any] = orjson.loads(raw)
    return status


def publish_dead_letters(store: StreamStore, letters: Sequence[dict[str, Any]]) -> None:
    store.put_meta(DEAD_LETTERS_KEY, orjson.dumps(list(letters)[-KEEP_DEAD_LETTERS:]))


def read_dead_letters(store: StreamStore, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters, oldest first."""
    raw = store.get_meta(DEAD_LETTERS_KEY)
    letters: list[dict[str, Any]] = [] if raw is None else orjson.loads(raw)
    return letters[-limit:] if limit > 0 else []


def runner_figures(status: dict[str, Any], now: float) -> tuple[dict[str, float], dict[str, float]]:
    """A runner's status as /metrics counters and gauges (``LoopStats.set_remote``)."""
    c = status["counters"]
    counters = {
        "stream_state_updates_total": float(c["state_updates"]),
        "stream_triggers_total": float(c["triggers"]),
        "stream_recommendation_writes_total": float(c["recommendation_writes"]),
        "stream_dead_letters_total:too-late": float(c["late"]),
        "stream_dead_letters_total:processing-error": float(c["failed"]),
        "stream_expired_users_total": float(c["expired_users"]),
        "stream_rebuilds_total": float(c.get("rebuilds", 0)),
        "stream_rebuilt_lists_total": float(c.get("rebuilt_lists", 0)),
        "stream_runner_pauses_total": float(c.get("pauses", 0)),
    }
    gauges = {
        "stream_runner_offset": float(status["processed_offset"]),
        "stream_users": float(status["users"]),
        "stream_runner_paused": float(status.get("paused") is not None),
        "stream_runner_status_age_seconds": now - float(status["updated_at"]),
    }
    for q in ("p50", "p99"):
        if status.get(f"lag_seconds_{q}") is not None:
            gauges[f"stream_lag_seconds_{q}"] = float(status[f"lag_seconds_{q}"])
    return counters, gauges
