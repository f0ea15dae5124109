"""The scale-out stream (events over NATS JetStream, lists in Redis, the runner in another
process) against a real, private Redis that is stopped, restarted empty, or full:

* a server whose runner is elsewhere reports the runner's real progress and dead letters,
  and creates no ``state.db`` of its own;
* while Redis is down, lookups answer the popular list marked ``degraded`` (never a 500);
  when it comes back empty, every user's list is rebuilt, including users with no new
  event;
* a failed list write is retried, not dropped, and the committed offset does not pass it.
"""

from __future__ import annotations

import time
import uuid

import pytest

from recloop.core.errors import StoreUnavailableError
from recloop.stores.redis_stream import RedisRecommendationStore
from recloop.stores.sqlite_stream import SqliteBehaviourLog, SqliteStreamState
from recloop.streaming.embedded import EmbeddedRunner
from recloop.streaming.events import BehaviourEvent
from recloop.streaming.processor import StreamProcessor
from tests.e2e.conftest import Server
from tests.integration import stream_services
from tests.integration.stream_services import (
    external_runner,
    stream_settings,
    wait_for,
)

pytestmark = pytest.mark.services
services = stream_services.services  # a private Redis and NATS for this module


def _events(users: list[str], per_user: int, now: float, tag: str) -> list[dict[str, object]]:
    return [
        {"user_id": u, "item_id": f"i{(n + j) % 7}", "behaviour": "view",
         "timestamp": now - 30 + j, "event_id": f"{tag}-{u}-{j}"}
        for n, u in enumerate(users) for j in range(per_user)
    ]  # fmt: skip


def _server(tmp_path, settings):
    return Server(data_dir=tmp_path / "server", pipeline="thread", stream=settings)


def _metric(api, line_start: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_server_reports_the_external_runners_progress_and_dead_letters(services, tmp_path):
    redis_server, nats_server = services
    name = f"EXT_{uuid.uuid4().hex[:8].upper()}"
    settings = stream_settings(redis_server, nats_server, name)
    users = [f"u{i}" for i in range(40)]
    with _server(tmp_path, settings) as api, external_runner(settings, tmp_path / "runner"):
        now = time.time()
        r = api.post("/v1/events", json=_events(users, 5, now, "a"))
        assert r.status_code == 200 and r.json()["accepted"] == 200, r.text
        late = {"user_id": "u0", "item_id": "old", "behaviour": "view",
                "timestamp": now - 3600, "event_id": "too-old"}  # fmt: skip
        assert api.post("/v1/events", json=late).json()["accepted"] == 1

        def caught_up():
            s = api.get("/v1/stream").json()
            return s if s["processed_offset"] == s["logged_offset"] == 201 else None

        status = wait_for(caught_up, "the server sees the runner caught up")
        assert status["lag_events"] == 0 and status["users"] == 40, status
        assert status["runner"] == "another process" and status["runner_paused"] is None
        assert status["log"] == status["recommendations"] == "ok"
        assert 0 <= status["runner_status_age_seconds"] < 5
        letters = wait_for(lambda: api.get("/v1/stream/dead-letters").json(), "dead letters")
        assert [(d["reason"], d["event"]["event_id"]) for d in letters] == [("too-late", "too-old")]
        assert _metric(api, 'recloop_stream_runner_offset{loop=""}') == 201
        assert _metric(api, 'recloop_stream_users{loop=""}') == 40
    assert not (tmp_path / "server" / "_stream" / "state.db").exists()


def test_redis_restarted_empty_every_list_is_rebuilt_and_lookups_degrade(services, tmp_path):
    redis_server, nats_server = services
    name = f"RESTART_{uuid.uuid4().hex[:8].upper()}"
    settings = stream_settings(redis_server, nats_server, name)
    users = [f"u{i}" for i in range(30)]
    with _server(tmp_path, settings) as api, external_runner(settings, tmp_path / "runner"):
        now = time.time()
        assert api.post("/v1/events", json=_events(users, 3, now, "a")).status_code == 200

        def lists():
            got = {u: api.get(f"/v1/users/{u}/recommendations").json() for u in users}
            return got if all(b["source"] == "state" for b in got.values()) else None

        before = wait_for(lists, "every user's list")
        wait_for(  # the popular list follows within a second; this server reads it once
            lambda: api.get("/v1/users/nobody/recommendations").json()["items"], "popular"
        )

        redis_server.stop()
        try:
            t0 = time.monotonic()
            r = api.get("/v1/users/u0/recommendations")
            assert time.monotonic() - t0 < 2.0
            assert r.status_code == 200, r.text  # not a plain-text 500
            body = r.json()
            assert body["source"] == "popular" and body["degraded"] is True and body["items"]
            status = api.get("/v1/stream").json()
            assert status["recommendations"].startswith("unavailable"), status
            # events keep coming while Redis is down: logged; their lists wait
            r = api.post("/v1/events", json=_events(["late-comer"], 2, now, "b"))
            assert r.status_code == 200 and r.json()["accepted"] == 2
            time.sleep(1.5)
        finally:
            redis_server.start()  # empty: it keeps nothing on disk

        after = wait_for(lists, "every list rebuilt after the restart", timeout=20)
        for u in users:  # nobody had a new event: the same state made the same version
            assert after[u]["state_version"] == before[u]["state_version"] == 3, u
            assert after[u]["degraded"] is False
        comer = wait_for(
            lambda: (
                (b := api.get("/v1/users/late-comer/recommendations").json())["source"] == "state"
                and b
            ),
            "the list of events logged during the outage",
        )
        assert comer["state_version"] == 2
        wait_for(lambda: _metric(api, 'recloop_stream_rebuilds_total{loop=""}') >= 1, "rebuilds")
        assert _metric(api, 'recloop_stream_served_total{loop="",reason="degraded"}') >= 1
        assert _metric(api, 'recloop_stream_store_errors_total{loop="",reason="redis"}') >= 1


def test_a_failed_list_write_is_retried_and_not_committed_past(services, tmp_path):
    """Redis refuses writes (maxmemory reached) but keeps its data: no restart for a marker
    to reveal. The runner must hold the batch's lists and write them when Redis takes
    writes again, and must not commit a snapshot past them meanwhile."""
    redis_server, _ = services
    prefix = f"recloop-test:{uuid.uuid4().hex}:"
    recs = RedisRecommendationStore(redis_server.url, prefix=prefix)
    state = SqliteStreamState(tmp_path / "state.db")
    events = SqliteBehaviourLog(tmp_path / "events.db")
    clock = [1000.0]
    runner = EmbeddedRunner(
        StreamProcessor(), events, state, recs, snapshot_every_seconds=0.0,
        clock=lambda: clock[0],
    )  # fmt: skip
    admin = redis_server.client()
    try:
        events.append([BehaviourEvent("a", "x", "view", 1000.0, "e1")])
        runner.run_until_idle()
        assert recs.get("a") is not None
        admin.config_set("maxmemory", 1)  # every write now fails with OOM
        try:
            events.append([BehaviourEvent("b", "y", "view", 1001.0, "e2")])
            clock[0] += 0.5  # not a second: no marker check, no status due
            with pytest.raises(StoreUnavailableError):
                runner.step()
            events.append([BehaviourEvent("c", "z", "view", 1002.0, "e3")])
            with pytest.raises(StoreUnavailableError):
                runner.step()  # the held lists first: nothing further is read
            assert recs.get("b") is None
            assert state.load()[0] == 1  # the committed offset has not passed b's list
        finally:
            admin.config_set("maxmemory", 0)
        while runner.step():
            pass
        got = recs.get("b")
        assert got is not None and got[0].state_version == 1, "b's list was dropped"
        assert recs.get("c") is not None
        runner.snapshot()
        assert state.load()[0] == 3
    finally:
        admin.config_set("maxmemory", 0)
        recs.clear()
        recs.close()
        state.close()
        events.close()
