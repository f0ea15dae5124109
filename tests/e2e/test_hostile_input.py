"""Hostile bodies and queries over HTTP: each a 4xx problem (or Personalizer error), never a
5xx or a bare ``{"detail": ...}``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from recloop.serving.routes import personalizer_evaluations
from tests.e2e.conftest import Server
from tests.e2e.test_api import RANK, problem

HUGE = 10**30
API = "?api-version=2022-09-01-preview"


@pytest.fixture(params=[True, False], ids=["fast-path", "routed"])
def api(serve: Callable[..., Server], request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    with serve(fast_path=request.param, pipeline="thread", max_body_bytes=20_000) as client:
        yield client


def _deep(levels: int) -> bytes:
    return b'{"fields": {"t": ' + b"[" * levels + b"1" + b"]" * levels + b"}}"


@pytest.mark.parametrize(
    "body",
    [
        {**RANK, "context": {"n": HUGE}},
        {**RANK, "context": {"n": {"m": -HUGE}}},
        {**RANK, "context": {"n": [HUGE]}},
        {"actions": [{"id": "a", "features": {"n": HUGE}}, {"id": "b"}]},
        {"actions": [{"id": "a", "fields": {"n": HUGE}}, {"id": "b"}]},
    ],
)
def test_integers_beyond_64_bits_in_a_rank_are_422(api: httpx.Client, body: Any) -> None:
    problem(api.post("/v1/rank", json=body), 422)
    assert api.post("/v1/rank", json=RANK).status_code == 200


def test_personalizer_ranks_with_huge_integers_are_400(api: httpx.Client) -> None:
    single = {"contextFeatures": [{"n": HUGE}], "actions": [{"id": "a", "features": [{}]}]}
    r = api.post(f"/personalizer/rank{API}", json=single)
    assert r.status_code == 400, r.text
    multi = {
        "contextFeatures": [{"n": HUGE}],
        "actions": [{"id": "a", "features": [{}]}, {"id": "b", "features": [{}]}],
        "slots": [{"id": "s1", "baselineAction": "a"}],
    }
    r = api.post(f"/personalizer/multislot/rank{API}", json=multi)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"fields": {"n": ' + str(HUGE).encode() + b"}}", 422),
        (_deep(300), 422),  # a RecursionError (500) before
        (_deep(6000), 400),  # deeper than the JSON parser goes: not JSON we can read
        (b'{"fields": {"t": "\xff\xfe"}}', 400),  # not UTF-8
    ],
)
def test_hostile_item_bodies(api: httpx.Client, raw: bytes, status: int) -> None:
    r = api.put("/v1/items/i1", content=raw, headers={"content-type": "application/json"})
    problem(r, status)


def test_a_deeply_nested_policy_body_is_a_problem(api: httpx.Client) -> None:
    raw = b'{"name": "p", "kind": "uniform", "params": ' + b"[" * 6000 + b"]" * 6000 + b"}"
    problem(
        api.post("/v1/policies", content=raw, headers={"content-type": "application/json"}), 400
    )


@pytest.mark.parametrize("path", ["/v1/items/big", "/v1/policies"])
def test_chunked_bodies_over_the_limit_are_413(api: httpx.Client, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"fields": {"t": "'
        for _ in range(50):
            yield b"x" * 1000
        yield b'"}}'

    method = "PUT" if path.startswith("/v1/items") else "POST"
    r = api.request(method, path, content=chunks(), headers={"content-type": "application/json"})
    problem(r, 413)


def test_unknown_routes_and_methods_are_problems(api: httpx.Client) -> None:
    problem(api.get("/v1/nothing-here"), 404)
    problem(api.delete("/v1/rank"), 405)


@pytest.mark.parametrize("limit", [-1, 0, 10**6])
def test_page_sizes_are_bounded(api: httpx.Client, limit: int) -> None:
    problem(api.get("/v1/items", params={"limit": limit}), 422)
    problem(api.get("/v1/dead-letters", params={"limit": limit}), 422)


def test_evaluations_run_at_most_two_at_a_time(serve: Callable[..., Server]) -> None:
    server = serve(pipeline="thread")
    body = {"name": "e", "startTime": "2026-01-01", "endTime": "2026-01-02", "policies": []}
    with server as api:
        slots = server.server.config.app.state.evaluation_slots
        assert slots.acquire(blocking=False) and slots.acquire(blocking=False)
        busy = api.put(f"/personalizer/evaluations/e1{API}", json=body)
        assert busy.status_code == 429, busy.text
        slots.release()
        assert api.put(f"/personalizer/evaluations/e2{API}", json=body).status_code == 200
        slots.release()


def test_stored_evaluations_are_bounded(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each PUT kept a record until deleted, without bound: a client could grow the state
    store and every list of evaluations."""
    monkeypatch.setattr(personalizer_evaluations, "MAX_STORED", 2, raising=False)
    body = {"name": "e", "startTime": "2026-01-01", "endTime": "2026-01-02", "policies": []}
    with serve(pipeline="thread") as api:
        for name in ("e1", "e2"):
            assert api.put(f"/personalizer/evaluations/{name}{API}", json=body).status_code == 200
        full = api.put(f"/personalizer/evaluations/e3{API}", json=body)
        assert full.status_code == 409, full.text
        assert "2 evaluations are stored" in full.json()["error"]["message"]
        assert len(api.get(f"/personalizer/evaluations{API}").json()["value"]) == 2
        assert api.delete(f"/personalizer/evaluations/e1{API}").status_code == 204
        deadline = time.monotonic() + 10
        while (r := api.put(f"/personalizer/evaluations/e3{API}", json=body)).status_code == 429:
            assert time.monotonic() < deadline, r.text  # e2's job still holds a slot
            time.sleep(0.05)
        assert r.status_code == 200, r.text


# What a schema fuzzer found (Schemathesis over the whole OpenAPI, tests/e2e/test_schema_fuzz.py)


def test_a_learning_mode_that_is_not_a_string_is_400(api: httpx.Client) -> None:
    for mode in ({}, [], 1):  # a dict or a list was unhashable: a 500
        r = api.put(f"/personalizer/configurations/service{API}", json={"learningMode": mode})
        assert r.status_code == 400, r.text
        assert "learningMode" in r.json()["error"]["message"]


def test_policy_params_beyond_64_bits_are_422(api: httpx.Client) -> None:
    body = {"name": "p", "kind": "uniform", "params": {"n": {"m": -HUGE}}}
    problem(api.post("/v1/policies", json=body), 422)  # a 500 when the spec was stored


@pytest.mark.parametrize("value", [False, True, "1", None])
def test_a_personalizer_reward_must_be_a_number(api: httpx.Client, value: Any) -> None:
    """``false`` was read as 0.0 and ``"1"`` as 1.0, and answered 204."""
    r = api.post(f"/personalizer/events/e1/reward{API}", json={"value": value})
    assert r.status_code == 400, r.text
    multi = {"reward": [{"slotId": "s", "value": value}]}
    r = api.post(f"/personalizer/multislot/events/e1/reward{API}", json=multi)
    assert r.status_code == 400, r.text


def test_evaluation_times_must_be_text(api: httpx.Client) -> None:
    """A number was read as seconds since 1970."""
    body = {"name": "e", "startTime": 0, "endTime": "2026-01-02"}
    r = api.put(f"/personalizer/evaluations/e1{API}", json=body)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/items", {"GET", "POST"}),
        ("POST", "/v1/items/i1", {"GET", "PUT", "DELETE"}),
        ("PUT", f"/personalizer/rank{API}", {"POST"}),  # a 404 before
        ("PATCH", f"/personalizer/configurations/service{API}", {"GET", "PUT"}),
    ],
)
def test_405_says_every_method_of_the_path(
    api: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    """Starlette's Allow named the methods of the first route of the path only."""
    r = api.request(method, path)
    assert r.status_code == 405, r.text
    assert set(r.headers["allow"].split(", ")) - {"HEAD"} == allowed


def test_unknown_personalizer_paths_are_personalizer_404s(api: httpx.Client) -> None:
    r = api.get(f"/personalizer/featureImportances{API}")
    assert r.status_code == 404 and "does not implement" in r.json()["error"]["message"]
    r = api.post("/loops/default/personalizer/nothing/here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ResourceNotFound"
