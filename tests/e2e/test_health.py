"""Liveness and readiness over HTTP, with the pipeline process killed under them."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Server
from tests.e2e.test_api import RANK, metric


def _wait(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_killed_pipeline_is_restarted_and_joins_resume(serve: Callable[..., Server]) -> None:
    """The issue's case: after kill -9 of the pipeline child, nothing was joined any more
    and /healthz kept saying ok."""
    with serve(exp_unit_seconds=0.5, checkpoint_every_examples=5) as api:
        ready = _wait(lambda: api.get("/readyz").status_code == 200 and api.get("/readyz"))
        assert ready.json()["loops"]["default"]["ready"] is True
        first = api.get("/healthz").json()["pipeline"]
        assert first["mode"] == "process" and first["alive"] and first["restarts"] == 0
        for _ in range(20):
            api.post("/v1/rank", json=RANK).raise_for_status()
        os.kill(first["pid"], signal.SIGKILL)
        for _ in range(20):  # acknowledged while the pipeline is down
            api.post("/v1/rank", json=RANK).raise_for_status()

        def restarted() -> dict[str, Any] | None:
            pipeline: dict[str, Any] = api.get("/healthz").json()["pipeline"]
            return pipeline if pipeline["restarts"] == 1 and pipeline["alive"] else None

        after = _wait(restarted)
        assert after["pid"] != first["pid"] and after["last_exit_code"] == -signal.SIGKILL
        assert metric(api, "recloop_pipeline_deaths_total") == 1

        def caught_up() -> bool:
            r = api.get("/readyz")
            return r.status_code == 200 and r.json()["loops"]["default"]["join_lag_records"] == 0

        _wait(caught_up)
        assert api.get("/healthz").status_code == 200


def test_readiness_reports_the_lag(serve: Callable[..., Server]) -> None:
    """The lag is what the joiner has not read yet (open windows are not lag): with no
    pipeline running (``external``, none started) all ten decisions are behind."""
    with serve(exp_unit_seconds=60.0, ready_max_lag=5, pipeline="external") as api:
        for _ in range(10):
            api.post("/v1/rank", json=RANK).raise_for_status()
        r = api.get("/readyz")
        assert r.status_code == 503, r.text
        loop = r.json()["loops"]["default"]
        assert loop["ready"] is False and loop["join_lag_records"] == 10
        assert "ready_max_lag" in loop["reason"]
        assert api.get("/healthz").status_code == 200  # behind is not dead


def test_healthz_and_readyz_are_documented(serve: Callable[..., Server]) -> None:
    with serve() as api:
        paths = api.get("/openapi.json").json()["paths"]
        assert "503" in paths["/healthz"]["get"]["responses"]
        assert "503" in paths["/readyz"]["get"]["responses"]


def test_a_deleted_data_dir_stops_acknowledgements(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """The issue's case: after rm -rf of the data dir, 200/202 kept coming for 16 s and
    every decision went into files no longer on disk."""
    data_dir = tmp_path / "doomed"
    with serve(exp_unit_seconds=5.0, pipeline="thread", data_dir=data_dir) as api:
        event_id = api.post("/v1/rank", json=RANK).json()["event_id"]
        shutil.rmtree(data_dir)
        for request in (
            lambda: api.post("/v1/rank", json=RANK),
            lambda: api.post(f"/v1/events/{event_id}/reward", json={"value": 1.0}),
        ):
            r = request()
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"].endswith("/storage-lost")
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert "deleted or replaced" in ready.json()["loops"]["default"]["reason"]
        assert metric(api, "recloop_rejected_total", reason="storage-lost") >= 2
