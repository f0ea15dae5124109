"""Forgetting a user in the behaviour stream: the log, the runner's state, the lists.

Order matters. The user's events leave the log first (SQLite rows, or JetStream messages
by sequence), so no replay can rebuild the user; then the runner drops the user from
memory and commits that (``EmbeddedRunner.forget``), and the list goes. The runner is
asked where it is:

* in this process: directly;
* nowhere (its lock is free here): the state file is edited under the runner's lock;
* in another process, or on another machine (a live status on the board): through a
  request it serves within a second (``streaming/forget_requests.py``), waited for a
  bounded time; unserved, the answer says ``pending`` and the runner serves it when it
  next runs.

Item popularity is an aggregate over all users and is kept.
"""

from __future__ import annotations

from typing import Any

from recloop.bus.nats_log import NatsBehaviourLog
from recloop.learning.lease import LeaseBusyError, PipelineLease
from recloop.stores.sqlite_stream import SqliteBehaviourLog, SqliteStreamState
from recloop.streaming import board, forget_requests
from recloop.streaming.service import Stream

LIVE_SECONDS = 10.0
"""A runner whose published status is younger than this is taken to be running."""
MAX_SCAN = 1_000_000
"""Messages of a NATS stream read at most per request (``complete: false`` beyond)."""


def _forget_events(stream: Stream, user_id: str, max_scan: int) -> dict[str, Any]:
    log = stream.log
    if isinstance(log, NatsBehaviourLog):
        deleted, scanned, complete = log.forget_user(user_id, max_scan)
        return {"log": "nats", "events": deleted, "scanned": scanned, "complete": complete}
    assert isinstance(log, SqliteBehaviourLog)
    return {"log": "sqlite", "events": log.forget_user(user_id), "complete": True}


def _forget_without_runner(stream: Stream, user_id: str) -> dict[str, int]:
    """No runner anywhere on this data dir (we hold its lock): edit its files directly."""
    out = {"state": 0, "recommendations": 0, "dead_letters": 0}
    state_db = stream.dir / "state.db"
    if state_db.exists():
        state = SqliteStreamState(state_db)
        try:
            out["state"], out["dead_letters"] = state.forget_user(user_id)
        finally:
            state.close()
    out["recommendations"] = stream.recs.delete(user_id)
    letters = board.read_dead_letters(stream.recs, board.KEEP_DEAD_LETTERS)
    kept = [d for d in letters if d.get("event", {}).get("user_id") != user_id]
    if len(kept) != len(letters):
        board.publish_dead_letters(stream.recs, kept)
    return out


def _runner_live(stream: Stream) -> bool:
    status = board.read_status(stream.recs)
    if not status or status.get("paused") == "stopped":
        return False
    return bool(stream.clock() - float(status.get("updated_at", 0.0)) < LIVE_SECONDS)


def forget_stream_user(
    stream: Stream, user_id: str, wait_seconds: float = 10.0, max_scan: int = MAX_SCAN
) -> dict[str, Any]:
    """Delete the user's behaviour events, state, list and dead letters; returns counts,
    ``complete`` (the whole log was searched) and ``pending`` (a runner elsewhere has not
    confirmed yet)."""
    out: dict[str, Any] = _forget_events(stream, user_id, max_scan)
    out["recommendations_store"] = "redis" if stream.remote_recs else "sqlite"
    out["pending"] = False
    if stream.runner is not None:
        out.update(stream.runner.forget(user_id))
        return out
    try:
        lease: PipelineLease | None = PipelineLease.acquire(stream.dir / "runner.lock", 0.0)
    except LeaseBusyError:
        lease = None
    counts = {"state": 0, "recommendations": 0, "dead_letters": 0}
    if lease is not None:
        try:
            counts = _forget_without_runner(stream, user_id)
        finally:
            lease.release()
    if lease is None or _runner_live(stream):  # a runner elsewhere holds the user in memory
        token = forget_requests.request(stream.recs, user_id)
        result = forget_requests.wait(stream.recs, token, wait_seconds)
        if result is None:
            out["pending"] = True
            counts["recommendations"] += stream.recs.delete(user_id)
        else:
            counts = {k: max(counts[k], int(result.get(k, 0))) for k in counts}
    out.update(counts)
    return out
