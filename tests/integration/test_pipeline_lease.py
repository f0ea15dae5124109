"""The pipeline lease under a PostgreSQL restart: the advisory lock goes with the session
that held it, and before, the old pipeline ran on beside the standby that took it."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psycopg
import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.learning.lease import LeaseLostError
from tests.integration.test_postgres_restart import (  # noqa: F401 - the fixture
    _kill_connections,
    database,
)


def _lease_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_pipeline_whose_lease_was_taken_stops_and_takes_it_back_later(
    database: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    settings = {"storage_url": database, "exp_unit_seconds": 1.0, "lease_wait_seconds": 0.0}
    first = Loop.open(tmp_path / "a", start=False, clock=clock, **settings)
    try:
        first.rank({}, ["a", "b"], event_id="e1")
        _kill_connections(database)  # as a restart does: the lease's session is gone
        second = Loop.open(tmp_path / "b", start=False, clock=clock, **settings)  # standby
        try:
            assert second.pipeline is not None  # it took the free lease
            time.sleep(1.05)  # the lease is checked once a second
            with pytest.raises(LeaseLostError):
                first.step()
            assert first.pipeline is None and first.stats.get("pipeline_lease_lost_total") == 1
            assert _lease_sessions(database) == 1  # one pipeline, not two
            clock.advance(5)
            assert second.step() == 1
            first.step()  # stands by: no pipeline, no error
            assert first.pipeline is None
        finally:
            second.close()
        time.sleep(1.05)
        first.step()  # free again: taken back, from the committed offsets
        assert first.pipeline is not None and _lease_sessions(database) == 1
        first.rank({}, ["a", "b"], event_id="e2")
        clock.advance(5)
        assert first.step() == 1  # e2 only: e1 was joined by the other pipeline
    finally:
        first.close()


def test_a_lease_lost_to_nobody_is_taken_again_at_once(
    database: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    loop = Loop.open(tmp_path, start=False, clock=clock, storage_url=database, exp_unit_seconds=1.0)
    try:
        loop.rank({}, ["a", "b"])
        _kill_connections(database)
        time.sleep(1.05)
        clock.advance(5)
        assert loop.step() == 1  # no error: the lease was free, the pipeline carried on
        assert loop.stats.get("pipeline_lease_lost_total") == 1
        assert _lease_sessions(database) == 1
    finally:
        loop.close()


def test_the_server_ends_a_vanished_holders_lease_in_seconds_and_names_its_process(
    database: str,  # noqa: F811 - the fixture imported above
) -> None:
    """A machine that vanishes without a reset (power, partition) leaves its session open
    on the server, and the lease with it, until the server's TCP keepalives give up: by
    default after 2 h 11 min here (7200 s + 9 x 75 s). The lease session asks for 10 s + 6 x
    5 s. (No firewall or network namespace here to cut a real peer off: the settings the
    server applies to the session are what is checked.)"""
    from recloop.stores.postgres_lease import PostgresLease

    lease = PostgresLease(database, "vanish", 0.0)
    try:
        conn = lease._conn
        assert conn is not None
        settings = [
            str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        ]
        assert settings == ["10", "5", "6"]
        with psycopg.connect(database, autocommit=True) as admin:
            names = [
                str(r[0])
                for r in admin.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                )
            ]
        assert names == [f"recloop-pipeline:{os.getpid()}:{socket.gethostname()}:vanish"]
    finally:
        lease.release()
