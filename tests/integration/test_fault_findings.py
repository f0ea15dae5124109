"""What the fault matrix (``python -m benchmarks.faults``) found, pinned by small tests.

* A full disk under the stream's behaviour log answered POST /v1/events with a bare 500:
  the log's ROLLBACK after SQLITE_FULL (which SQLite had already rolled back) raised
  "cannot rollback - no transaction is active" and hid the real, typed error.
* After ``rm -rf`` of the data dir, a client retrying a rank whose first answer was the
  503 was told 409 "already logged": the record was only in the deleted file, and a
  careful client takes a 409 to its retry for an acknowledgement (lost).
* After ``rm -rf`` of the data dir, behaviour events went on being acknowledged into the
  deleted ``events.db`` (the loop's event log already refused; the stream's did not).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from recloop.core.errors import StoreUnavailableError
from recloop.core.types import BehaviourEvent
from recloop.stores.sqlite_stream import SqliteBehaviourLog
from tests.disk import fill, small_tmpfs
from tests.e2e.conftest import Server

RANK = {"context": {"u": 1}, "actions": [{"id": "a"}, {"id": "b"}], "event_id": "e1"}


def _event(n: int) -> BehaviourEvent:
    return BehaviourEvent.from_dict(
        {"user_id": "u", "item_id": f"i{n}", "behaviour": "view", "timestamp": 1.0,
         "event_id": f"b{n}"}
    )  # fmt: skip


def test_a_full_disk_under_the_behaviour_log_is_a_store_error_not_a_500(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path, "8m") as disk:
        log = SqliteBehaviourLog(disk / "events.db")
        assert log.append([_event(0)]) == [1]
        fill(disk / "filler")
        with pytest.raises(StoreUnavailableError, match="full"):  # a 503, not "cannot
            log.append([_event(n) for n in range(1, 200)])  # rollback" (a bare 500)
        (disk / "filler").unlink()
        assert log.append([_event(1)]) == [2]  # and it carries on once there is room


def test_after_the_data_dir_is_deleted_nothing_is_acknowledged_not_even_a_retry(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "doomed"
    event = {"user_id": "u", "item_id": "i", "behaviour": "view", "event_id": "b1"}
    with Server(data_dir=data_dir, pipeline="thread", exp_unit_seconds=5.0) as api:
        assert api.post("/v1/events", json=[event]).json()["accepted"] == 1
        assert api.get("/healthz").status_code == 200
        shutil.rmtree(data_dir)
        first = api.post("/v1/rank", json=RANK)  # committed into the deleted file: 503
        assert first.status_code == 503, first.text
        retry = api.post("/v1/rank", json=RANK)  # was 409: "already logged" (lost)
        assert retry.status_code == 503, retry.text
        assert retry.json()["type"].endswith("/storage-lost")
        for batch in ([{**event, "event_id": "b2"}], [event]):  # new, and a retry
            r = api.post("/v1/events", json=batch)  # were 200: logged into the deleted file
            assert r.status_code == 503, r.text
            assert r.json()["type"].endswith("/storage-lost")
        health = api.get("/healthz")  # was 200: nothing told the orchestrator to restart it
        assert health.status_code == 503 and health.json()["storage"] == "lost"
    assert not data_dir.exists() or not list(data_dir.rglob("*.db")), "nothing written back"
    with pytest.raises(sqlite3.OperationalError):  # (the deleted files are really gone)
        sqlite3.connect(f"file:{data_dir}/_stream/events.db?mode=ro", uri=True).execute(
            "SELECT 1 FROM events"
        )
