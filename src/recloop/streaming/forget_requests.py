"""Asking a stream runner in another process (or on another machine) to forget a user.

The runner alone writes the stream's state, and it holds every user in memory: deleting
a user's rows under it would not stop it writing them back at its next snapshot or
rebuild. So a server without the runner leaves a request where the runner looks every
second, in the store they share (``board``): the meta key ``forget`` holds the pending
requests, ``forgotten`` the newest results by request token. The runner forgets the user
(memory, snapshot, list), records the result, and removes the request; the server waits
for the result a bounded time. Requests hold the user id only until they are served.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from recloop.core.protocols import StreamStore

PENDING_KEY = "forget"
DONE_KEY = "forgotten"
KEEP_RESULTS = 100


def _load(store: StreamStore, key: str) -> tuple[bytes | None, Any]:
    raw = store.get_meta(key)
    return raw, (None if raw is None else orjson.loads(raw))


def _update(store: StreamStore, key: str, change: Callable[[Any], Any]) -> None:
    """Compare-and-swap until it holds (other servers and the runner write it too)."""
    while True:
        raw, value = _load(store, key)
        if store.swap_meta(key, raw, orjson.dumps(change(value))):
            return


def request(store: StreamStore, user_id: str) -> str:
    """Leave a request for the runner; returns its token."""
    token = uuid.uuid4().hex
    _update(store, PENDING_KEY, lambda v: [*(v or []), {"token": token, "user_id": user_id}])
    return token


def pending(store: StreamStore) -> list[dict[str, str]]:
    _, value = _load(store, PENDING_KEY)
    return list(value or [])


def done(store: StreamStore, token: str, result: dict[str, int]) -> None:
    """The runner served a request: record its result, then remove it."""

    def add(results: dict[str, Any] | None) -> dict[str, Any]:
        kept = list((results or {}).items())[-(KEEP_RESULTS - 1) :]
        return {**dict(kept), token: result}

    _update(store, DONE_KEY, add)
    _update(store, PENDING_KEY, lambda v: [r for r in (v or []) if r.get("token") != token])


def wait(store: StreamStore, token: str, seconds: float) -> dict[str, int] | None:
    """The result of a request, or None if the runner has not served it in ``seconds``
    (it stays pending: the runner serves it when it next runs)."""
    deadline = time.monotonic() + seconds
    while True:
        _, results = _load(store, DONE_KEY)
        if results and token in results:
            return dict(results[token])
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
