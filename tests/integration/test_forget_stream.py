"""Forgetting a user in the behaviour stream, on both layouts: the embedded one (SQLite log,
state and lists) and the scaled-out one (NATS JetStream log, Redis lists), checked in the
backends themselves, and after a restart and a full replay of the log."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from recloop.privacy.stream import forget_stream_user
from recloop.settings import StreamSettings
from recloop.streaming import board
from recloop.streaming.service import Stream

NATS_URL = os.environ.get("RECLOOP_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("RECLOOP_TEST_REDIS_URL_FORGET", "redis://127.0.0.1:6379/9")
T0 = 1_700_000_000.0


def _reachable(kind: str) -> str | None:
    try:
        if kind == "redis":
            import redis

            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
        else:
            import asyncio

            import nats

            async def ping() -> None:
                nc = await nats.connect(NATS_URL, connect_timeout=3, max_reconnect_attempts=0)
                await nc.close()

            asyncio.run(ping())
    except Exception as exc:  # any failure to reach it is a reason to skip, given clearly
        return f"{kind} not reachable: {exc!r}"
    return None


@pytest.fixture(params=["sqlite", "nats-redis"])
def settings(request) -> Iterator[StreamSettings]:
    base: dict[str, Any] = {"snapshot_every_seconds": 3600.0, "allowed_lateness_seconds": 60.0}
    if request.param == "sqlite":
        yield StreamSettings(**base)
        return
    for kind in ("nats", "redis"):
        reason = _reachable(kind)
        if reason:
            pytest.skip(reason)
    name = f"RECLOOP_FORGET_{uuid.uuid4().hex[:10].upper()}"
    s = StreamSettings(**base, log_url=NATS_URL, nats_stream=name, recommendations_url=REDIS_URL)
    yield s
    stream = Stream(s, Path("/nonexistent-unused"), run=False)
    try:
        stream.log.delete_stream()  # type: ignore[attr-defined]
        stream.recs.clear()  # type: ignore[attr-defined]
    finally:
        stream.close()


def _events(user: str, n: int, start: float = T0) -> list[dict[str, Any]]:
    return [
        {"user_id": user, "item_id": f"i{i % 7}", "behaviour": "view", "timestamp": start + i,
         "event_id": f"{user}-{uuid.uuid4().hex[:8]}"}
        for i in range(n)
    ]  # fmt: skip


def _log_users(stream: Stream) -> list[str]:
    """Every event's user, read from the log itself (the SQLite rows or JetStream)."""
    return [e.user_id for _, e in stream.log.read(0, 100_000)]


def _state_rows(data_dir: Path) -> dict[str, Any]:
    conn = sqlite3.connect(data_dir / "_stream" / "state.db")
    try:
        users = {u for (u,) in conn.execute("SELECT user_id FROM users")}
        dead = [
            orjson.loads(b)["user_id"] for (b,) in conn.execute("SELECT body FROM dead_letters")
        ]
        meta = conn.execute("SELECT value FROM meta WHERE key = 'recent_dead_letters'").fetchone()
        recent = [d["event"]["user_id"] for d in orjson.loads(meta[0])] if meta else []
    finally:
        conn.close()
    return {"users": users, "dead": dead, "recent": recent}


def _run(settings: StreamSettings, data_dir: Path) -> Stream:
    stream = Stream(settings, data_dir, run=False, clock=lambda: T0 + 100)
    assert stream.start_runner(background=False)
    assert stream.runner is not None
    stream.runner.run_until_idle()
    return stream


def test_forgets_a_user_in_every_stream_backend_and_a_replay_does_not_bring_them_back(
    settings, tmp_path
):
    u1, u2 = f"u1-{uuid.uuid4().hex[:6]}", f"u2-{uuid.uuid4().hex[:6]}"
    stream = _run(settings, tmp_path)
    late = _events(u1, 1, start=T0 - 1000)  # too late once u1's later events are in
    report = stream.ingest(_events(u1, 5) + _events(u2, 4) + late)
    assert report.accepted == 10
    assert stream.runner is not None
    stream.runner.run_until_idle()
    before = _state_rows(tmp_path)
    assert {u1, u2} <= before["users"] and u1 in before["dead"]
    assert stream.recs.get(u1) is not None and _log_users(stream).count(u1) == 6

    out = forget_stream_user(stream, u1)

    assert out["events"] == 6 and out["state"] == 1 and out["recommendations"] == 1
    assert out["dead_letters"] == 1 and out["complete"] and not out["pending"]
    assert u1 not in _log_users(stream) and _log_users(stream).count(u2) == 4
    after = _state_rows(tmp_path)
    assert u1 not in after["users"] | set(after["dead"]) | set(after["recent"])
    assert u2 in after["users"]
    assert stream.recs.get(u1) is None and stream.recs.get(u2) is not None
    published = board.read_dead_letters(stream.recs, 1000)
    assert all(d["event"]["user_id"] != u1 for d in published)
    assert u1 not in stream.runner.processor.users

    again = forget_stream_user(stream, u1)
    assert (again["events"], again["state"], again["recommendations"]) == (0, 0, 0)

    stream.ingest(_events(u2, 2, start=T0 + 50))  # the stream goes on for everyone else
    stream.runner.run_until_idle()
    stream.close()

    restarted = _run(settings, tmp_path)  # from the snapshot
    assert restarted.runner is not None
    assert u1 not in restarted.runner.processor.users and u2 in restarted.runner.processor.users
    assert restarted.runner.processor.users[u2].state.events == 6
    restarted.close()
    (tmp_path / "_stream" / "state.db").unlink()  # a full replay of the log from offset 0
    replayed = _run(settings, tmp_path)
    assert replayed.runner is not None
    assert u1 not in replayed.runner.processor.users
    assert replayed.runner.processor.users[u2].state.events == 6
    assert replayed.recs.get(u1) is None
    assert u1 not in _state_rows(tmp_path)["users"]
    replayed.close()


def test_a_runner_in_another_process_forgets_on_request(tmp_path):
    settings = StreamSettings(snapshot_every_seconds=3600.0)
    runner_side = Stream(settings, tmp_path, run=False)
    assert runner_side.start_runner(background=True)  # holds the runner lock
    try:
        runner_side.ingest(_events("ua", 3) + _events("ub", 3))
        server = Stream(settings, tmp_path, run=False)  # a worker without the runner
        assert server.runner is None
        deadline = 50
        while runner_side.runner and len(runner_side.runner.processor.users) < 2 and deadline:
            import time

            time.sleep(0.1)
            deadline -= 1
        out = forget_stream_user(server, "ua", wait_seconds=10.0)
        assert not out["pending"] and out["state"] == 1 and out["events"] == 3
        assert runner_side.runner is not None
        assert "ua" not in runner_side.runner.processor.users
        assert "ua" not in _state_rows(tmp_path)["users"] and server.recs.get("ua") is None
        assert "ub" in _state_rows(tmp_path)["users"]
        server.close()
    finally:
        runner_side.close()
