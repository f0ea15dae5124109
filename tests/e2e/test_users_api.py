"""DELETE /v1/users/{id} on a real server whose pipeline runs in a child process: the
user's rows leave every SQLite file, the pipeline never joins them back, everyone else's
data stays and keeps being joined; hostile ids are refused with problem details."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

ACTIONS = [{"id": a, "features": {"kind": a}} for a in ("a", "b", "c")]


def _naming(data: Path, needle: bytes) -> dict[str, int]:
    """Rows anywhere in the data dir's SQLite files (the audit log in ``keys.db`` too) whose
    stored bytes contain ``needle``."""
    found: dict[str, int] = {}
    for file in sorted(data.rglob("*.db")):
        conn = sqlite3.connect(file)
        try:
            tables = [
                t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                for row in conn.execute(f"SELECT * FROM {table}"):
                    cells = [c.encode() if isinstance(c, str) else c for c in row]
                    if any(isinstance(c, bytes) and needle in c for c in cells):
                        key = f"{file.relative_to(data)}:{table}"
                        found[key] = found.get(key, 0) + 1
        finally:
            conn.close()
    return found


def _joined(data: Path) -> set[str]:
    conn = sqlite3.connect(data / "default" / "joined.db")
    try:
        return {e for (e,) in conn.execute("SELECT event_id FROM joined")}
    finally:
        conn.close()


def _offset(data: Path, event_id: str) -> int:
    conn = sqlite3.connect(data / "default" / "loop.db")
    try:
        row = conn.execute(
            "SELECT MAX(offset) FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def _read_offset(data: Path) -> int:
    """How far the pipeline (a child process) has read and committed the log."""
    conn = sqlite3.connect(data / "default" / "joined.db")
    try:
        row = conn.execute("SELECT value FROM offsets WHERE name = 'joiner.read'").fetchone()
        return 0 if row is None else int(row[0])
    finally:
        conn.close()


def _decide(api, user: str, n: int, prefix: str) -> list[str]:
    ids = []
    for i in range(n):
        rank = {"context": {"user_id": user, "hour": i}, "actions": ACTIONS,
                "event_id": f"{prefix}-{i}"}  # fmt: skip
        r = api.post("/v1/rank", json=rank)
        assert r.status_code == 200, r.text
        assert api.post(f"/v1/events/{prefix}-{i}/reward", json={"value": 1.0}).status_code == 202
        ids.append(f"{prefix}-{i}")
    return ids


def _wait(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_delete_user_over_http(serve, tmp_path):
    data = tmp_path / "data"
    with serve(exp_unit_seconds=1.0, join_grace_seconds=0.0) as api:
        now = time.time()
        events = [{"user_id": u, "item_id": f"i{i}", "behaviour": "view", "timestamp": now - 5 + i}
                  for u in ("alice", "bob") for i in range(3)]  # fmt: skip
        assert api.post("/v1/events", json=events).json()["accepted"] == 6
        _decide(api, "alice", 4, "alice")
        bob = _decide(api, "bob", 4, "bob")
        _wait(lambda: {"alice-3", "bob-3"} <= _joined(data))
        _wait(lambda: api.get("/v1/users/alice/recommendations").json()["source"] == "state")
        pending = _decide(api, "alice", 2, "alice-late")
        _wait(lambda: _read_offset(data) >= _offset(data, "alice-late-1"))  # in its memory now
        assert not set(pending) & _joined(data)  # windows still open
        assert _naming(data, b"alice")

        r = api.delete("/v1/users/alice")

        assert r.status_code == 200, r.text
        body = r.json()
        assert body["deleted"]["decisions"] == 6 and body["deleted"]["rewards"] == 6
        assert body["deleted"]["joined_examples"] == 4
        assert body["deleted"]["events"] == 3 and body["deleted"]["state"] == 1
        assert body["deleted"]["recommendations"] == 1
        assert body["loops"]["default"]["backend"] == "sqlite"
        assert body["complete"] and not body["pending"] and "not unlearned" in body["not_deleted"]
        assert _naming(data, b"alice") == {}  # the audit log included (it named her before)
        digest = hashlib.sha256(b"alice").hexdigest()[:16]
        erasure = [e for e in api.get("/v1/audit").json() if e["method"] == "DELETE"]
        assert [(e["path"], e["status"], e["loop"]) for e in erasure] == [
            (f"/v1/users/sha256:{digest}", 200, None)
        ]
        rec = api.get("/v1/users/alice/recommendations").json()
        assert rec["source"] == "popular"

        later = _decide(api, "bob", 3, "bob-after")  # the pipeline goes on for everyone else
        _wait(lambda: set(later) <= _joined(data))
        time.sleep(1.5)  # past the forgotten pending decisions' windows too
        assert _naming(data, b"alice") == {}, "the pipeline joined a forgotten decision"
        assert not set(pending) & _joined(data)
        assert set(bob) <= _joined(data)
        assert _naming(data, b"bob")

        again = api.delete("/v1/users/alice")
        assert again.status_code == 200
        assert set(again.json()["deleted"].values()) == {0}


def test_hostile_user_ids_are_problems_not_errors(api):
    for path in ("/v1/users/" + "x" * 300, "/v1/users/%00evil", "/v1/users/%2Apopular%2A",
                 "/v1/users/a%0Ab"):  # fmt: skip
        r = api.delete(path)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 422
    for wait in ("-1", "nan", "inf", "1e400", "x"):
        assert api.delete(f"/v1/users/fine?wait={wait}").status_code == 422, wait
    assert api.delete("/v1/users/nobody-at-all").json()["deleted"]["decisions"] == 0
