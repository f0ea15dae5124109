"""The scale-out stream through a NATS outage (a real, private nats-server stopped and
started again on its JetStream store):

* a POST while NATS is away is answered at once with a 503 problem (Retry-After), and its
  events are never logged later, so a caller that retries it whenever it likes cannot
  count them twice;
* unrelated requests answer fast meanwhile (nothing waits on NATS on the event loop);
* the runner pauses with one warning (no traceback), says so in the status, and resumes
  from its offset when NATS is back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import httpx
import pytest

from recloop.bus.nats_log import NatsBehaviourLog
from tests.e2e.conftest import Server
from tests.integration import stream_services
from tests.integration.stream_services import (
    external_runner,
    stream_settings,
    tracebacks,
    wait_for,
)

pytestmark = pytest.mark.services
services = stream_services.services  # a private Redis and NATS for this module

OUTAGE_SECONDS = 6.0


def _event(user: str, item: str, ts: float, event_id: str) -> dict[str, object]:
    return {"user_id": user, "item_id": item, "behaviour": "view", "timestamp": ts,
            "event_id": event_id}  # fmt: skip


def _list(api: httpx.Client, user: str, version: int) -> dict[str, object] | None:
    body = api.get(f"/v1/users/{user}/recommendations").json()
    return body if body["source"] == "state" and body["state_version"] >= version else None


def test_a_nats_outage_fails_posts_fast_stalls_nothing_and_logs_nothing_later(
    services, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    redis_server, nats_server = services
    name = f"OUTAGE_{uuid.uuid4().hex[:8].upper()}"
    settings = stream_settings(redis_server, nats_server, name)
    server = Server(data_dir=tmp_path / "server", pipeline="thread", stream=settings)
    now = time.time()
    lost_ids: set[str] = set()
    with server as api, external_runner(settings, tmp_path / "runner"):
        batch = [_event("u", f"i{j}", now - 10 + j, f"before-{j}") for j in range(2)]
        batch += [_event(f"o{j}", "hit", now - 10, f"pop-{j}") for j in range(3)]
        assert api.post("/v1/events", json=batch).json()["accepted"] == 5
        wait_for(lambda: _list(api, "u", 2), "u's list")

        nats_server.stop()
        began = time.monotonic()
        try:
            wait_for(
                lambda: api.get("/v1/stream").json()["log"].startswith("unavailable"),
                "the server sees the log unreachable",
                timeout=5,
            )
            answers: list[tuple[httpx.Response, float]] = []

            def post(n: int) -> None:
                events = [_event("lost", f"x{j}", now, f"lost-{n}-{j}") for j in range(50)]
                lost_ids.update(str(e["event_id"]) for e in events)
                t0 = time.monotonic()
                r = httpx.post(server.url + "/v1/events", json=events, timeout=30)
                answers.append((r, time.monotonic() - t0))

            posts = [threading.Thread(target=post, args=(n,)) for n in range(4)]
            for t in posts:
                t.start()
            slowest = 0.0
            for _ in range(10):  # unrelated requests while the POSTs are in flight
                for path in ("/healthz", "/v1/users/u/recommendations"):
                    t0 = time.monotonic()
                    assert api.get(path).status_code == 200
                    slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.05)
            for t in posts:
                t.join(timeout=20)
            assert slowest < 0.5, f"an unrelated GET took {slowest:.2f} s during the outage"
            assert len(answers) == 4
            for r, seconds in answers:
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"].endswith("store-unavailable")
                assert int(r.headers["retry-after"]) >= 1
                assert seconds < 1.0, f"a failed POST took {seconds:.2f} s"
            wait_for(
                lambda: api.get("/v1/stream").json()["runner_paused"], "the runner's pause shown"
            )
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
        finally:
            nats_server.start()

        def post_after() -> bool:
            r = api.post("/v1/events", json=[_event("u", "i9", now, "after-1")])
            return r.status_code == 200

        wait_for(post_after, "a POST succeeds again", timeout=20, every=0.2)
        wait_for(lambda: _list(api, "u", 3), "the runner resumed", timeout=20)
        wait_for(lambda: api.get("/v1/stream").json()["runner_paused"] is None, "unpaused")
        time.sleep(1.0)  # anything a client buffered would have been sent by now
        assert api.get("/v1/users/lost/recommendations").json()["source"] == "popular"
        status = api.get("/v1/stream").json()
        assert status["processed_offset"] == status["logged_offset"], status

    reader = NatsBehaviourLog(
        nats_server.url, stream=name, subject="recloop.events." + name.lower()
    )
    try:
        logged = [e.event_id for _, e in reader.read(0, 10_000)]
    finally:
        reader.delete_stream()
        reader.close()
    assert not lost_ids & set(logged), "events whose POST failed were logged later"
    assert logged == ["before-0", "before-1", "pop-0", "pop-1", "pop-2", "after-1"]
    assert tracebacks(caplog.records) == []
