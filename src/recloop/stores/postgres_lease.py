"""The pipeline lease on PostgreSQL: one pipeline per loop across machines."""

from __future__ import annotations

import contextlib
import time

import psycopg

from recloop.core.errors import LeaseBusyError, StoreUnavailableError
from recloop.stores.postgres_db import (
    CONNECT_TIMEOUT,
    SESSION_LIMITS,
    Conn,
    lock_key,
)


class PostgresLease:
    """One pipeline per loop across machines: a session advisory lock, released by the
    server when the holder's connection ends (including a killed process)."""

    def __init__(self, url: str, loop: str, wait_seconds: float) -> None:
        import os
        import socket

        # who holds the lease shows in pg_stat_activity: pid and host first (63 bytes kept)
        name = f"recloop-pipeline:{os.getpid()}:{socket.gethostname()}:{loop}"[:63]
        try:
            self._conn: Conn | None = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name=name,
                **SESSION_LIMITS,
            )
        except psycopg.OperationalError as exc:  # a standby tries again in a second
            raise StoreUnavailableError(
                f"PostgreSQL unavailable for the pipeline lease: {exc}", "no-connection"
            ) from exc
        key = lock_key(loop, "pipeline")
        deadline = time.monotonic() + wait_seconds
        while True:
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row is not None and row[0]:
                break
            if time.monotonic() >= deadline:
                self._conn.close()
                raise LeaseBusyError(
                    f"another process runs the pipeline of loop {loop!r} on {url} "
                    f"(advisory lock held for {wait_seconds}s)"
                )
            time.sleep(0.05)

    def held(self) -> bool:
        """A session advisory lock lasts as long as the session: if the connection still
        answers, the lock is ours; a restarted server ended it (and may have given it to
        another pipeline)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()  # ends the session: the lock goes with it
            self._conn = None
