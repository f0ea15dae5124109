"""The decision fast path answers exactly as FastAPI's routes do: one script of requests
(good, bad, several loops, API key, size limit) sent to a server with the fast path and to
one without it; every status, content type, body and counter must match."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server
from tests.e2e.test_api import ACTIONS, RANK, metric

TOML = """
[loops.default]
exp_unit_seconds = 60.0
[loops.news]
exp_unit_seconds = 60.0
"""
KEY = {"X-API-Key": "k"}
JSON = {"content-type": "application/json", **KEY}


def _script(api: httpx.Client) -> list[tuple[str, int, str, Any]]:
    """Send the requests; return (label, status, content type, body) for each."""
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("rank", "/v1/rank", {"json": {**RANK, "event_id": "e1"}}),
        ("rank ?loop", "/v1/rank?loop=news", {"json": {**RANK, "event_id": "e1"}}),
        ("rank path loop", "/v1/loops/news/rank", {"json": {**RANK, "event_id": "e2"}}),
        (
            "rank excluded",
            "/v1/rank",
            {"json": {**RANK, "event_id": "e3", "excluded_actions": ["sports"]}},
        ),
        (
            "rank deferred",
            "/v1/rank",
            {"json": {**RANK, "event_id": "e4", "defer_activation": True}},
        ),
        ("duplicate event", "/v1/rank", {"json": {**RANK, "event_id": "e1"}}),
        ("unknown loop", "/v1/loops/nope/rank", {"json": RANK}),
        ("unknown loop ?loop", "/v1/rank?loop=nope", {"json": RANK}),
        ("blank ?loop", "/v1/rank?loop=", {"json": RANK}),
        ("malformed", "/v1/rank", {"content": b'{"context": ', "headers": JSON}),
        ("wrong type", "/v1/rank", {"json": {"context": [], "actions": ACTIONS}}),
        ("empty actions", "/v1/rank", {"json": {"context": {}, "actions": []}}),
        (
            "NaN",
            "/v1/rank",
            {"content": b'{"actions": [{"id": "a", "features": {"x": NaN}}]}', "headers": JSON},
        ),
        ("oversized", "/v1/rank", {"json": {"context": {"b": "x" * 3000}, "actions": ACTIONS}}),
        ("no key", "/v1/rank", {"json": RANK, "headers": {"X-API-Key": "wrong"}}),
        ("reward", "/v1/events/e1/reward", {"json": {"value": 1.0, "reward_id": "r"}}),
        ("reward again", "/v1/events/e1/reward", {"json": {"value": 1.0, "reward_id": "r"}}),
        ("reward other loop", "/v1/loops/news/events/e2/reward", {"json": {"value": 0.5}}),
        ("reward unknown", "/v1/events/nope/reward", {"json": {"value": 1}}),
        ("reward not a number", "/v1/events/e1/reward", {"json": {"value": "1"}}),
        ("reward no body", "/v1/events/e1/reward", {"content": b"", "headers": JSON}),
        ("activate", "/v1/events/e4/activate", {}),
        ("activate unknown", "/v1/events/nope/activate", {}),
        ("rank trailing slash", "/v1/rank/", {"json": RANK}),
    ]
    out = []
    for label, path, kwargs in calls:
        kwargs.setdefault("headers", KEY)
        r = api.post(path, **kwargs)
        kind = r.headers.get("content-type", "")
        body = r.json() if "json" in kind else r.text
        out.append((label, r.status_code, kind, body))
    api.headers.update(KEY)  # /metrics needs an admin key when the server has keys
    counters = [
        metric(api, "recloop_rejected_total", reason=reason)
        for reason in (
            "malformed-json",
            "invalid-input",
            "duplicate-event",
            "unknown-loop",
            "payload-too-large",
            "unauthorized",
            "duplicate-reward",
        )
    ]
    out.append(("counters", 0, "", counters))
    out.append(("rewards", 0, "", metric(api, "recloop_rewards_total", loop="default")))
    return out


def test_fast_path_answers_as_the_routes_do(serve: Callable[..., Server], tmp_path: Path) -> None:
    config = tmp_path / "loops.toml"
    config.write_text(TOML)
    results = []
    for fast in (True, False):
        with serve(fast, config_file=config, api_key="k", max_body_bytes=2000) as api:
            results.append(_script(api))
    fast_results, routed = results
    for got, want in zip(fast_results, routed, strict=True):
        assert got == want, got[0]
    statuses = {label: status for label, status, _, _ in routed}
    assert statuses["rank"] == statuses["rank ?loop"] == statuses["rank path loop"] == 200
    assert statuses["reward"] == statuses["reward other loop"] == 202
    assert statuses["malformed"] == 400 and statuses["oversized"] == 413
    assert statuses["rank trailing slash"] != 200
