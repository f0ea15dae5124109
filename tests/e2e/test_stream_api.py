"""The behaviour stream over HTTP: events in, recommendations out, bad input, metrics."""

from __future__ import annotations

import time

import orjson


def _wait_for(client, user, version, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/users/{user}/recommendations").json()
        if body["source"] == "state" and body["state_version"] >= version:
            return body
        time.sleep(0.01)
    raise AssertionError(f"no recommendation for {user} at version {version}: {body}")


def test_events_in_recommendations_out(api):
    now = time.time()
    # the popular items: i1 > i2 > i3
    batch = [{"user_id": f"o{j}", "item_id": item, "behaviour": "buy", "timestamp": now - 5}
             for j, item in enumerate(["i1", "i1", "i1", "i2", "i2", "i3"])]  # fmt: skip
    r = api.post("/v1/events", json=batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 6, "duplicates": 0, "rejected": 0, "errors": []}
    fresh = api.get("/v1/users/newcomer/recommendations?k=2").json()
    assert fresh["source"] == "popular" and fresh["state_version"] is None
    r = api.post("/v1/events", json={"user_id": "u", "item_id": "i1", "behaviour": "view",
                                     "timestamp": now, "event_id": "ev-1"})  # fmt: skip
    assert r.json()["accepted"] == 1
    body = _wait_for(api, "u", 1)
    assert [i["id"] for i in body["items"]][:2] == ["i2", "i3"]  # i1 consumed
    assert body["event_time"] == now
    again = api.post("/v1/events", json={"user_id": "u", "item_id": "i1", "behaviour": "view",
                                         "timestamp": now, "event_id": "ev-1"})  # fmt: skip
    assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": 0, "errors": []}
    popular = api.get("/v1/users/nobody/recommendations?k=1").json()
    assert popular["source"] == "popular" and [i["id"] for i in popular["items"]] == ["i1"]


def test_late_events_are_dead_lettered_and_progress_is_visible(serve):
    with serve(stream={"snapshot_every_seconds": 0.1}) as api:
        now = time.time()
        first = {"user_id": "u", "item_id": "i1", "behaviour": "view", "timestamp": now}
        assert api.post("/v1/events", json=first).json()["accepted"] == 1
        _wait_for(api, "u", 1)
        old = {"user_id": "u", "item_id": "i9", "behaviour": "view", "timestamp": now - 3600}
        late = api.post("/v1/events", json={**old, "event_id": "too-old"})
        assert late.json()["accepted"] == 1  # durable; the runner dead-letters it
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # dead letters are committed with the next snapshot
            letters = api.get("/v1/stream/dead-letters").json()
            if letters:
                break
            time.sleep(0.1)
        assert letters[0]["reason"] == "too-late" and letters[0]["event"]["event_id"] == "too-old"
        status = api.get("/v1/stream").json()
        # offsets may have gaps (an ignored duplicate can use one up): compare, don't count
        assert status["logged_offset"] == status["processed_offset"] >= 2, status
        assert status["users"] == 1, status


def test_json_lines_with_bad_lines_are_reported_by_number(api):
    now = time.time()
    lines = [
        orjson.dumps({"user_id": "a", "item_id": "x", "behaviour": "click", "timestamp": now}),
        b"{not json",
        b"",
        orjson.dumps({"user_id": "a", "item_id": "y", "behaviour": "like"}),
        orjson.dumps({"user_id": "a", "item_id": "z", "behaviour": "cart", "timestamp": now + 1e6}),
        orjson.dumps({"item_id": "z", "behaviour": "cart"}),
        orjson.dumps({"user_id": "a", "item_id": "w", "behaviour": "buy"}),
    ]
    r = api.post("/v1/events", content=b"\n".join(lines),
                 headers={"content-type": "application/x-ndjson"})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 4
    assert [e["line"] for e in body["errors"]] == [2, 4, 5, 6]
    assert "malformed JSON" in body["errors"][0]["error"]
    assert "unknown behaviour" in body["errors"][1]["error"]
    assert "future" in body["errors"][2]["error"]
    assert "user_id" in body["errors"][3]["error"]
    _wait_for(api, "a", 2)
    metrics = api.get("/metrics").text
    assert 'recloop_stream_rejected_total{loop="",reason="malformed-line"} 1.0' in metrics
    assert 'recloop_stream_rejected_total{loop="",reason="invalid-event"} 3.0' in metrics
    assert "recloop_stream_events_in_total" in metrics
    assert "recloop_stream_triggers_total" in metrics


def test_bad_batches_are_refused_whole(serve):
    with serve(stream={"max_batch_events": 3}) as api:
        r = api.post("/v1/events", content=b"{oops", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["type"].endswith("malformed-json")
        many = [{"user_id": "u", "item_id": str(i), "behaviour": "view"} for i in range(4)]
        r = api.post("/v1/events", json=many)
        assert r.status_code == 413 and "limit is 3" in r.json()["detail"]
        r = api.post("/v1/events", json=[{"user_id": "u", "behaviour": "view"}])
        assert r.status_code == 422 and r.json()["rejected"] == 1
        r = api.post("/v1/events", json=[])
        assert r.status_code == 422
        assert api.get("/v1/users/u/recommendations").json()["items"] == []  # nothing logged
        assert api.get("/v1/users/u/recommendations?k=0").status_code == 422


def test_stream_can_be_disabled(serve):
    with serve(stream={"enabled": False}) as api:
        r = api.post("/v1/events", json={"user_id": "u", "item_id": "i", "behaviour": "view"})
        assert r.status_code == 404 and r.json()["type"].endswith("stream-disabled")


def test_events_over_nats_jetstream_and_recommendations_in_redis(serve):
    """The scale-out backends: the behaviour log on NATS JetStream, lists in Redis."""
    import uuid

    import pytest

    from tests.contract.test_behaviour_logs import NATS_URL
    from tests.contract.test_stream_stores import REDIS_URL, _redis_reachable

    if reason := _redis_reachable():
        pytest.skip(reason)
    name = f"RECLOOP_E2E_{uuid.uuid4().hex[:10].upper()}"
    settings = {"log_url": NATS_URL, "nats_stream": name, "recommendations_url": REDIS_URL}
    try:
        with serve(stream=settings) as api:
            now = time.time()
            batch = [{"user_id": f"o{j}", "item_id": item, "behaviour": "buy", "timestamp": now}
                     for j, item in enumerate(["a", "a", "b"])]  # fmt: skip
            assert api.post("/v1/events", json=batch).json()["accepted"] == 3
            r = api.post("/v1/events", json={"user_id": f"nats-{name}", "item_id": "a",
                                             "behaviour": "view", "timestamp": now})  # fmt: skip
            assert r.json()["accepted"] == 1
            body = _wait_for(api, f"nats-{name}", 1)
            assert [i["id"] for i in body["items"]] == ["b"]
    finally:
        from recloop.bus.nats_log import NatsBehaviourLog

        log = NatsBehaviourLog(NATS_URL, stream=name, subject="recloop.events." + name.lower())
        log.delete_stream()
        log.close()


def test_replay_a_file_into_a_running_server(api, tmp_path):
    from typer.testing import CliRunner

    from recloop.cli import app

    now = time.time()
    rows = [{"user_id": f"r{i % 5}", "item_id": f"i{i % 9}", "behaviour": "view",
             "timestamp": now + i * 0.001, "event_id": f"r-{i}"} for i in range(200)]  # fmt: skip
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n{oops}\n")
    url = str(api.base_url)
    out = CliRunner().invoke(app, ["replay", str(path), "--url", url, "--rate", "2000",
                                   "--batch", "50"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "200 accepted, 0 duplicates, 1 rejected" in out.stdout
    assert "line 201: malformed JSON" in out.stdout
    body = _wait_for(api, "r4", 40)
    assert body["source"] == "state"
