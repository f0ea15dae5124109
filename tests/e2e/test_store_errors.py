"""A store that fails answers 503 problem details, not a bare 500 (issue 20, defect 8).

A real full disk under a real server: the data dir is a small tmpfs, filled while the
server runs. Before the fix, SQLite's "database or disk is full" reached Starlette as an
unhandled ``sqlite3.OperationalError``: ``500 text/plain`` "Internal Server Error" on the
decision fast path and on the FastAPI routes alike. Now it is ``StoreUnavailableError``
(503, Retry-After, counted by cause), and the server passes once there is room again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.disk import fill, small_tmpfs
from tests.e2e.conftest import Server

ACTIONS = [{"id": a, "features": {"topic": a}} for a in ("news", "sports", "music")]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "16m") as mount:
        yield mount


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-routes"])
def test_a_full_disk_answers_503_problem_details_and_the_server_carries_on(
    serve: Callable[..., Server], small_disk: Path, fast_path: bool
) -> None:
    body = {"context": {"pad": "x" * 100_000}, "actions": ACTIONS}
    server = serve(fast_path, data_dir=small_disk / "data", pipeline="thread")
    with server as client:
        assert client.post("/v1/rank", json=body).status_code == 200
        fill(small_disk / "filler")
        for _ in range(200):  # the log's WAL grows with each decision: soon it cannot
            answer = client.post("/v1/rank", json=body)
            if answer.status_code != 200:
                break
        else:
            pytest.fail("the disk never filled")
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "1"
        problem = answer.json()
        assert problem["type"] == "https://recloop.dev/problems/store-unavailable"
        assert problem["status"] == 503
        assert "full" in problem["detail"]
        assert problem["instance"] == "/v1/rank"
        metrics = client.get("/metrics").text
        assert 'recloop_rejected_total{loop="",reason="store-unavailable"} 1.0' in metrics
        assert 'recloop_store_errors_total{loop="",reason="disk-full"} 1.0' in metrics

        (small_disk / "filler").unlink()
        answer = client.post("/v1/rank", json=body)  # room again: no restart needed
        assert answer.status_code == 200, answer.text
        reward = client.post(f"/v1/events/{answer.json()['event_id']}/reward", json={"value": 1})
        assert reward.status_code == 202, reward.text
