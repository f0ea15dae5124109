"""Forget everything about one user, in every backend the server (or a data dir) has:
each decision loop's log and joined examples (SQLite or PostgreSQL), and the behaviour
stream's log (SQLite or NATS JetStream), state and recommendation lists (SQLite or
Redis). One entry point for the web API and the CLI.

What is not deleted, by design: learned models (a model is not unlearned; it ages out by
training on new data, or an operator resets the loop's model), item popularity and other
aggregates over all users, and copies made outside recloop (exports, backups).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recloop.privacy.loops import forget_in_loop
from recloop.privacy.matching import check_user_id
from recloop.settings import LoopSettings
from recloop.streaming.service import Stream

LOOP_COUNTS = ("decisions", "rewards", "activations", "dead_letters", "joined")
NOT_DELETED = (
    "learned models are not unlearned (they age out as the learner trains on new data; "
    "reset a loop's model to drop them at once); aggregates over all users (item "
    "popularity) are kept"
)


def forget_user(
    user_id: str,
    loops: Mapping[str, tuple[LoopSettings, Path]],
    stream: Stream | None,
    now: float,
    wait_seconds: float = 10.0,
) -> dict[str, Any]:
    """Delete the user everywhere; returns counts per loop, for the stream, and totals."""
    from recloop.privacy.stream import forget_stream_user

    check_user_id(user_id)
    per_loop = {
        name: forget_in_loop(settings, loop_dir, user_id, now)
        for name, (settings, loop_dir) in loops.items()
    }
    stream_out = None if stream is None else forget_stream_user(stream, user_id, wait_seconds)
    totals = {k: sum(int(c[k]) for c in per_loop.values()) for k in LOOP_COUNTS}
    totals["joined_examples"] = totals.pop("joined")
    for key in ("events", "state", "recommendations"):
        totals[key] = int(stream_out[key]) if stream_out else 0
    totals["dead_letters"] += int(stream_out["dead_letters"]) if stream_out else 0
    return {
        "user_id": user_id,
        "deleted": totals,
        "loops": per_loop,
        "stream": stream_out,
        "complete": stream_out is None or bool(stream_out["complete"]),
        "pending": stream_out is not None and bool(stream_out["pending"]),
        "not_deleted": NOT_DELETED,
    }
