"""PostgreSQL connections that outlive a restart of the database.

A store used to hold one connection for its whole life: after PostgreSQL restarted, every
statement on it failed ("the connection is closed") until the server was restarted by
hand. Here each store draws from a small ``psycopg_pool`` pool, which discards a broken
connection when it comes back and opens a new one in the background. On top of it:

* work that cannot double anything is tried again once on a fresh connection when the
  one it used turned out broken (the usual first statement after a restart): reads;
  writes whose transaction failed before its COMMIT was sent (nothing was written);
  idempotent writes (upserts keyed by name, ``ON CONFLICT DO NOTHING`` inserts);
* a write whose COMMIT got no answer may or may not have happened: its ``confirm``
  query looks, on a fresh connection, for what it wrote (an event at the offset its
  INSERT returned); found, it succeeded; absent, it is written again; with no way to
  tell, the error is raised and nothing is acknowledged (an append is never doubled);
* anything else (the database still away, a full disk) is ``StoreUnavailableError``:
  503 problem details with Retry-After, while the pool keeps reconnecting.

While the database is known to be away, a request waits at most ``WAIT_DOWN`` for a
connection instead of ``WAIT_UP``: the decision routes run on the event loop, and an
outage must not stall every other request behind them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from recloop.core.errors import StoreUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.Connection[Any]

ATTEMPTS = 2
"""Tries of retryable work: a broken connection, then a fresh one."""
CONNECT_TIMEOUT = 5
"""Seconds for a new connection: a host that vanished must not hold a pool worker."""
SESSION_LIMITS: dict[str, Any] = {
    # a statement stuck behind a lock or a partition fails instead of holding a request;
    # the server's keepalives end the session of a client machine gone without a reset in
    # ~40 s (its defaults: 2 h), and with it the pipeline lease it held, so a standby on
    # another machine takes over then, not hours later
    "options": "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000 "
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=6",
    # a peer gone without a reset (a network partition) is noticed in ~40 s, not hours
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 6,
}
"""Per session: what a client on a network needs so nothing it waits on can hang forever."""
WAIT_UP = 0.5
"""Seconds a request waits for a connection while the database answers (a replacement
for a connection found broken is made in milliseconds once the database is back)."""
WAIT_DOWN = 0.02
"""Seconds a request waits for a connection while the database is known to be away."""
RECONNECT_SECONDS = 2.0
"""The pool backs off between reconnection attempts (1 s, then doubling); after this long
it gives up and the next request starts a new attempt, so attempts stay about a second
apart for as long as the database is away, and the first request after it is back gets
a connection."""

_UNSET: Any = object()


def lock_key(loop: str, what: str) -> int:
    """An advisory-lock key for one loop's ``what`` (log, join, model, items...)."""
    digest = hashlib.blake2b(f"recloop:{what}:{loop}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _reason(exc: BaseException, lost: bool) -> str:
    """The cause as counted in ``store_errors_total``."""
    if lost:
        return "connection-lost"
    if isinstance(exc, PoolTimeout):
        return "no-connection"
    if isinstance(exc, psycopg.errors.DiskFull):
        return "disk-full"
    if isinstance(exc, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow):
        return "database-restarting"
    return "database-error"


class _RollBack(Exception):
    """Makes psycopg's transaction block roll back."""


class Database:
    """One store's connections: a pool, retries that cannot double anything, typed errors.

    ``lock`` serialises the store's work in this process, as its single connection did;
    ``begin``/``end`` pin one connection for a transaction spanning several calls (the
    event log's ``exclusive()``), during which ``read`` and ``write`` run on it, each
    write in a savepoint, and nothing is retried (the transaction is the caller's).
    """

    def __init__(self, url: str, schema: str, name: str) -> None:
        self.lock = threading.RLock()
        self._pinned: Conn | None = None
        self._tx: AbstractContextManager[psycopg.Transaction] | None = None
        self._down = False
        try:  # a plain connection first: a wrong URL or a database away says so at once
            with (
                psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn,
                conn.transaction(),
            ):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("", "schema"),))
                conn.execute(schema)
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"PostgreSQL: cannot open {name}: {exc}", _reason(exc, False)
            ) from exc
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT, **SESSION_LIMITS},
            min_size=1,
            max_size=1,  # the store's lock lets one call at a time use it
            open=False,
            name=name,
            reconnect_timeout=RECONNECT_SECONDS,
            num_workers=1,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT + 1)
        except psycopg.OperationalError as exc:  # gone again since: leave no thread behind
            self._pool.close()
            raise StoreUnavailableError(
                f"PostgreSQL: cannot open {name}: {exc}", _reason(exc, False)
            ) from exc

    @property
    def pinned(self) -> bool:
        return self._pinned is not None

    def read(self, work: Callable[[Conn], T]) -> T:
        """Run ``work`` (statements that only read); tried again when the connection was
        broken."""
        return self._run(work, transaction=False, idempotent=True, confirm=None)

    def write(
        self,
        work: Callable[[Conn], T],
        *,
        idempotent: bool = False,
        confirm: Callable[[Conn, T], bool] | None = None,
    ) -> T:
        """Run ``work`` in one transaction. Tried again when it failed before its COMMIT;
        when the COMMIT itself got no answer, tried again only if ``idempotent``, or if
        ``confirm(conn, result)`` (on a fresh connection) finds it was not written."""
        return self._run(work, transaction=True, idempotent=idempotent, confirm=confirm)

    @contextmanager
    def transaction(self, setup: Callable[[Conn], object]) -> Iterator[Conn]:
        """``begin``, the caller's statements on the connection yielded, ``end``: one
        transaction, rolled back on any error; a lost connection raises the typed error."""
        with self.lock:
            conn = self.begin(setup)
            try:
                yield conn
            except psycopg.OperationalError as exc:
                self.end(commit=False)
                raise self._failed(exc, conn.broken or conn.closed) from exc
            except BaseException:
                self.end(commit=False)
                raise
            self.end(commit=True)

    def begin(self, setup: Callable[[Conn], object]) -> Conn:
        """Open a transaction on a pinned connection and run ``setup`` in it (taking an
        advisory lock); tried again on a fresh connection if the first was broken."""
        with self.lock:
            assert self._pinned is None, "begin() inside begin()"
            for attempt in range(ATTEMPTS):
                conn = self._get()
                tx = conn.transaction()
                entered = False
                try:
                    tx.__enter__()
                    entered = True
                    setup(conn)
                except psycopg.OperationalError as exc:
                    self._release(conn, tx if entered else None, exc)
                    if conn.broken and attempt + 1 < ATTEMPTS:
                        continue
                    raise self._failed(exc, conn.broken) from exc
                except BaseException as exc:
                    self._release(conn, tx if entered else None, exc)
                    raise
                self._pinned, self._tx = conn, tx
                return conn
            raise AssertionError("unreachable")

    def end(self, commit: bool, confirm: Callable[[Conn], bool] | None = None) -> None:
        """Commit (or roll back) the pinned transaction and return its connection. A
        COMMIT without an answer is checked with ``confirm`` when given; otherwise, or
        when the database is still away, it raises ``StoreUnavailableError``."""
        with self.lock:
            conn, tx = self._pinned, self._tx
            if conn is None or tx is None:  # ended already: a failed COMMIT let it go
                assert not commit, "end() without begin()"
                return
            self._pinned = self._tx = None
            if not commit:
                self._release(conn, tx, _RollBack())
                return
            error: psycopg.OperationalError | None = None
            try:
                if conn.broken or conn.closed:  # psycopg would skip the COMMIT silently
                    raise psycopg.OperationalError("the connection was lost in the transaction")
                tx.__exit__(None, None, None)
            except psycopg.OperationalError as exc:
                error = exc
            finally:
                self._pool.putconn(conn)
            if error is None:
                self._up()
                return
            if confirm is not None and self._confirmed(lambda c, _: confirm(c), None):
                return
            raise self._failed(error, True) from error

    def close(self) -> None:
        with self.lock:
            self._pool.close()

    # -- internals ------------------------------------------------------------------------
    def _run(
        self,
        work: Callable[[Conn], T],
        *,
        transaction: bool,
        idempotent: bool,
        confirm: Callable[[Conn, T], bool] | None,
    ) -> T:
        with self.lock:
            if self._pinned is not None:
                return self._on_pinned(self._pinned, work, transaction)
            error: psycopg.OperationalError | None = None
            lost = False
            for attempt in range(ATTEMPTS):
                conn = self._get()
                result: T = _UNSET
                committing = False
                try:
                    if transaction:
                        with conn.transaction():
                            result = work(conn)
                            committing = True  # leaving the block sends the COMMIT
                    else:
                        result = work(conn)
                except psycopg.OperationalError as exc:
                    error, lost = exc, conn.broken or conn.closed
                else:
                    self._up()
                    return result
                finally:
                    self._pool.putconn(conn)
                if not lost or attempt + 1 == ATTEMPTS:
                    break
                if committing and not idempotent:
                    if confirm is None:
                        break  # it may have been written: never write it twice
                    if self._confirmed(confirm, result):
                        return result
                self._pool.check()  # the other idle connections are as stale
            assert error is not None
            raise self._failed(error, lost) from error

    def _on_pinned(self, conn: Conn, work: Callable[[Conn], T], transaction: bool) -> T:
        try:
            if transaction:
                with conn.transaction():  # a savepoint: a typed error keeps the rest
                    return work(conn)
            return work(conn)
        except psycopg.OperationalError as exc:
            raise self._failed(exc, conn.broken or conn.closed) from exc

    def _confirmed(self, confirm: Callable[[Conn, T], bool], result: T) -> bool:
        """Whether a write whose COMMIT got no answer is in the database (a fresh
        connection; raises StoreUnavailableError if the database cannot tell yet)."""
        self._pool.check()
        found = self._run(
            lambda conn: confirm(conn, result), transaction=False, idempotent=True, confirm=None
        )
        log.warning("a commit without an answer %s", "had happened" if found else "had not")
        return found

    def _get(self) -> Conn:
        try:
            return self._pool.getconn(WAIT_DOWN if self._down else WAIT_UP)
        except psycopg.OperationalError as exc:  # PoolTimeout, PoolClosed
            raise self._failed(exc, False) from exc

    def _release(
        self, conn: Conn, tx: AbstractContextManager[Any] | None, exc: BaseException
    ) -> None:
        """Roll back (psycopg skips it on a broken connection) and return ``conn``."""
        try:
            if tx is not None:
                tx.__exit__(type(exc), exc, None)
        finally:
            self._pool.putconn(conn)

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("PostgreSQL store %s is available again", self._pool.name)

    def _failed(self, exc: psycopg.OperationalError, lost: bool) -> StoreUnavailableError:
        if not self._down:
            self._down = True
            log.warning("PostgreSQL store %s is unavailable: %s", self._pool.name, exc)
        return StoreUnavailableError(f"PostgreSQL unavailable: {exc}", _reason(exc, lost))


class PostgresStore:
    """What every PostgreSQL store shares: its loop, its ``Database`` (made with the
    tables it needs) and one-statement reads."""

    def __init__(self, url: str, loop: str, schema: str) -> None:
        self.loop = loop
        self._db = Database(url, schema, f"recloop-{type(self).__name__}-{loop}")
        self._lock = self._db.lock

    def _one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        return self._db.read(lambda c: c.execute(sql, params).fetchone())

    def _all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._db.read(lambda c: c.execute(sql, params).fetchall())

    def _count(self, sql: str, params: Sequence[Any]) -> int:
        row = self._one(sql, params)
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()
