"""Servers on PostgreSQL outlive a restart of the database (issue 20, defect 4).

The fast tests kill the stores' connections from another session (what a restart does to
them, without the restart): every store must carry on, and a COMMIT that loses its
connection must be settled, never written twice. The slow one restarts PostgreSQL:
two real servers (``recloop serve``, each with its pipeline process) share one freshly
created database. While they take ranks and rewards, PostgreSQL is restarted for real.
Before the fix every /v1 request answered a bare 500 ("the connection is closed") until
the servers were restarted by hand. Now: requests made while the database is away get
503 problem details with Retry-After, every /v1 request succeeds again within a bounded
time after it is back, with no restart of the servers, and every acknowledged decision
and reward is in the log exactly once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.errors import StoreUnavailableError

pytestmark = pytest.mark.services

BASE_URL = os.environ.get("RECLOOP_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
ACTIONS = [{"id": a, "features": {"topic": a}} for a in ("news", "sports", "music")]
OUTAGE_SECONDS = 2.5
"""Between stopping PostgreSQL and starting it again (``restart`` alone was down ~1 s)."""
RECOVERY_BOUND_SECONDS = 10.0
"""Every /v1 request succeeds this soon after PostgreSQL takes connections again."""


def _unusable(reason: str) -> None:
    if os.environ.get("CI"):  # CI has PostgreSQL and root: never pass by skipping there
        pytest.fail(reason)
    pytest.skip(reason)


def _cluster() -> list[str]:
    versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        _unusable("restarting PostgreSQL needs root and pg_ctlcluster (a Debian cluster)")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", sorted(versions)[-1], "main"]


def _ensure_running(cluster: list[str]) -> None:
    """Start PostgreSQL if it is down (a failed restart must not leave it stopped)."""
    import psycopg

    try:
        psycopg.connect(BASE_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        subprocess.run([*cluster, "start"], check=False, timeout=60)


def _wait_accepting(url: str, timeout: float = 60.0) -> float:
    """The moment PostgreSQL takes connections again."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=1).close()
            return time.monotonic()
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            time.sleep(0.02)


@pytest.fixture
def database() -> Iterator[str]:
    """A database of its own, dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect(BASE_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        _unusable(f"PostgreSQL not reachable at {BASE_URL}: {exc}")
    name = f"recloop_restart_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield BASE_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with suppress(Exception), psycopg.connect(BASE_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(url: str, data_dir: Path, log: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env.update(
        RECLOOP_STORAGE_URL=url,
        RECLOOP_EXP_UNIT_SECONDS="3",
        RECLOOP_CHECKPOINT_EVERY_EXAMPLES="20",
    )
    cmd = [sys.executable, "-m", "recloop.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--data-dir", str(data_dir)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            with suppress(httpx.TransportError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield base
        assert proc.poll() is None, "the server died: " + log.read_text(errors="replace")[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Traffic:
    """One client sending rank, reward, rank, reward... and a routed /v1 read, recording
    every answer with the time it came."""

    base: str
    answers: list[tuple[float, str, httpx.Response]] = field(default_factory=list)
    ranked: list[str] = field(default_factory=list)
    rewarded: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self.stop.is_set():
                event_id = uuid.uuid4().hex
                body = {"context": {"u": event_id[:4]}, "actions": ACTIONS, "event_id": event_id}
                rank = client.post("/v1/rank", json=body)
                self.answers.append((time.monotonic(), "rank", rank))
                if rank.status_code == 200:
                    self.ranked.append(event_id)
                    reward = client.post(f"/v1/events/{event_id}/reward", json={"value": 1.0})
                    self.answers.append((time.monotonic(), "reward", reward))
                    if reward.status_code == 202:
                        self.rewarded.append(event_id)
                models = client.get("/v1/models")  # a FastAPI route, not the fast path
                self.answers.append((time.monotonic(), "models", models))
                time.sleep(0.01)


def _failures(answers: list[tuple[float, str, httpx.Response]]) -> list[tuple[float, str, int]]:
    return [(t, what, r.status_code) for t, what, r in answers if r.status_code >= 300]


@pytest.mark.slow
def test_servers_answer_503_while_postgres_restarts_and_recover_by_themselves(
    database: str, tmp_path: Path
) -> None:
    import psycopg

    cluster = _cluster()
    with (
        _server(database, tmp_path / "d0", tmp_path / "s0.log") as first,
        _server(database, tmp_path / "d1", tmp_path / "s1.log") as second,
    ):
        traffic = [Traffic(first), Traffic(second)]
        threads = [threading.Thread(target=t.run, daemon=True) for t in traffic]
        for thread in threads:
            thread.start()
        try:
            time.sleep(2.0)
            assert all(t.rewarded for t in traffic), "no traffic before the restart"
            assert not any(_failures(t.answers) for t in traffic), "failures before the restart"
            started = time.monotonic()
            try:  # a restart with an outage long enough to be seen by every server
                subprocess.run([*cluster, "stop"], check=True, timeout=120)
                time.sleep(OUTAGE_SECONDS)
                starting = subprocess.Popen([*cluster, "start"])
                back = _wait_accepting(database)  # before pg_ctlcluster returns
                starting.wait(timeout=120)
            finally:
                _ensure_running(cluster)
            time.sleep(RECOVERY_BOUND_SECONDS + 3.0)
        finally:
            for t in traffic:
                t.stop.set()
            for thread in threads:
                thread.join(timeout=60)

        recovered_after: list[float] = []
        for t in traffic:
            failures = _failures(t.answers)
            assert failures, "the outage was never seen: the test proves nothing"
            for _, _, response in (a for a in t.answers if a[2].status_code >= 300):
                assert response.status_code == 503, (response.status_code, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"].endswith("/store-unavailable"), response.text
                assert int(response.headers["retry-after"]) >= 1
            first_failure, last_failure = failures[0][0], failures[-1][0]
            assert first_failure >= started
            recovered_after.append(last_failure - back)
            assert last_failure - back < RECOVERY_BOUND_SECONDS, failures[-5:]
            later = [a for a in t.answers if a[0] > last_failure]
            assert {what for _, what, _ in later} == {"rank", "reward", "models"}
            assert len(later) > 30
            slowest = max(r.elapsed.total_seconds() for _, _, r in t.answers)
            print(
                f"\n{t.base}: {len(failures)} of {len(t.answers)} answers were 503, "
                f"{first_failure - started:.2f} to {last_failure - started:.2f} s after the "
                f"stop (back after {back - started:.2f} s); slowest answer {slowest:.2f} s"
            )
        print(f"last failure {max(recovered_after):+.2f} s after PostgreSQL took connections")

        for base in (first, second):
            metrics = httpx.get(base + "/metrics").text
            assert 'recloop_rejected_total{loop="",reason="store-unavailable"}' in metrics
            assert "recloop_store_errors_total" in metrics

        # every acknowledged decision and reward is in the log exactly once, and the
        # pipeline (which failed its steps during the outage) joins them all
        acknowledged = [e for t in traffic for e in t.ranked]
        rewarded = {e for t in traffic for e in t.rewarded}
        with psycopg.connect(database) as conn:
            counts: dict[tuple[str, str], int] = {}
            for kind, event_id, n in conn.execute(
                "SELECT kind, event_id, COUNT(*) FROM recloop_events GROUP BY kind, event_id"
            ).fetchall():
                counts[(kind, event_id)] = n
            assert all(counts.get(("decision", e)) == 1 for e in acknowledged)
            assert all(counts.get(("reward", e)) == 1 for e in rewarded)
            assert max(counts.values()) == 1  # nothing written twice, acknowledged or not
            deadline = time.monotonic() + 60
            while True:
                joined = {
                    e for (e,) in conn.execute("SELECT event_id FROM recloop_joined").fetchall()
                }
                if joined >= set(acknowledged) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert set(acknowledged) <= joined, len(set(acknowledged) - joined)
            rewards = dict(conn.execute("SELECT event_id, reward FROM recloop_joined").fetchall())
            assert all(rewards[e] == 1.0 for e in rewarded)


def _kill_connections(url: str) -> int:
    """Terminate every session on the database of ``url`` but our own, as a restart does."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    time.sleep(0.05)  # the backends exit asynchronously
    return len(rows)


def _count(url: str, sql: str, *params: object) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def test_every_store_carries_on_after_its_connections_are_killed(
    database: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    loop = Loop.open(
        tmp_path,
        start=False,
        clock=clock,
        storage_url=database,
        exp_unit_seconds=1.0,
        checkpoint_every_examples=1,
    )
    try:
        loop.put_item("news", {"topic": "news"})
        first = loop.rank({"u": 1}, ["news", "b"])
        assert _kill_connections(database) >= 4  # log, joined, models, items (and lease)
        second = loop.rank({"u": 2}, ["news", "b"])  # the event log's append
        _kill_connections(database)
        loop.reward(second.event_id, 1.0)  # exclusive(): a transaction over several calls
        _kill_connections(database)
        assert loop.get_item("news") is not None  # the item store
        _kill_connections(database)
        clock.advance(2.0)
        assert loop.step() == 2  # joined store and model store (a checkpoint per example)
        _kill_connections(database)
        assert [v.version for v in loop.model_versions()][:1] == [loop.refresh_model()]
        events = "SELECT COUNT(*) FROM recloop_events WHERE kind = %s"
        assert _count(database, events, "decision") == 2
        assert _count(database, events, "reward") == 1
        assert {e.decision.event_id for e in loop.joined.read(0, 10)} == {
            first.event_id,
            second.event_id,
        }
    finally:
        loop.close()


DIE_AT_COMMIT = """
CREATE SEQUENCE recloop_test_fuse;
CREATE FUNCTION recloop_test_die() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('recloop_test_fuse') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER recloop_test_die AFTER INSERT ON recloop_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION recloop_test_die();
"""
"""The first append to commit after this loses its connection in its COMMIT (a deferred
trigger runs there and ends the session): the client cannot tell whether it committed."""


def test_a_commit_that_loses_its_connection_is_settled_and_never_doubled(
    database: str, tmp_path: Path
) -> None:
    import psycopg

    loop = Loop.open(tmp_path, start=False, storage_url=database, exp_unit_seconds=60.0)
    try:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(DIE_AT_COMMIT)
        decision = loop.rank({"u": 1}, ["a", "b"], event_id="e1")  # settled, then retried
        assert _count(database, "SELECT last_value FROM recloop_test_fuse") >= 2  # it fired
        decisions = "SELECT COUNT(*) FROM recloop_events WHERE event_id = 'e1' AND kind = %s"
        assert _count(database, decisions, "decision") == 1
        assert loop.log.get_decision("e1") == decision

        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("ALTER SEQUENCE recloop_test_fuse RESTART")
        # a reward commits the transaction of exclusive(), which the caller's work spans:
        # not retried, but found not written, so it is answered 503 and nothing is logged
        with pytest.raises(StoreUnavailableError):
            loop.reward("e1", 1.0)
        assert _count(database, decisions, "reward") == 0
        loop.reward("e1", 1.0)  # the client's retry
        assert _count(database, decisions, "reward") == 1
    finally:
        loop.close()
