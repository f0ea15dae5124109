"""API keys and the audit log in PostgreSQL: one set for every server and machine that
shares the database (``storage_url``). Same semantics as ``SqliteKeyStore``."""

from __future__ import annotations

from typing import Any

import psycopg

from recloop.core.errors import DuplicateKeyError, UnknownKeyError
from recloop.stores.keys import AuditEntry, KeyInfo, Scope, check_scope
from recloop.stores.postgres_db import Conn, Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS recloop_api_keys (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL,
    digest BYTEA NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL,
    revoked DOUBLE PRECISION);
CREATE UNIQUE INDEX IF NOT EXISTS recloop_api_keys_active_name
    ON recloop_api_keys(name) WHERE revoked IS NULL;
CREATE TABLE IF NOT EXISTS recloop_audit (
    seq BIGSERIAL PRIMARY KEY, time DOUBLE PRECISION NOT NULL, key TEXT NOT NULL,
    method TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, loop TEXT);
"""


def _info(row: tuple[Any, ...]) -> KeyInfo:
    return KeyInfo(str(row[0]), check_scope(str(row[1])), float(row[2]), row[3])


class PostgresKeyStore:
    def __init__(self, url: str, keep: int) -> None:
        self.keep = keep
        self._db = Database(url, SCHEMA, "recloop-keys")

    def add(self, name: str, scope: Scope, key_digest: bytes, created: float) -> KeyInfo:
        def work(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO recloop_api_keys (name, scope, digest, created) "
                "VALUES (%s, %s, %s, %s)",
                (name, scope, key_digest, created),
            )

        try:  # confirm: a lost COMMIT is checked for the digest (unique per key)
            self._db.write(work, confirm=lambda c, _: self._has(c, key_digest))
        except psycopg.errors.UniqueViolation:
            raise DuplicateKeyError(f"an active key is named {name!r}") from None
        return KeyInfo(name, scope, created, None)

    @staticmethod
    def _has(conn: Conn, key_digest: bytes) -> bool:
        sql = "SELECT 1 FROM recloop_api_keys WHERE digest = %s"
        return conn.execute(sql, (key_digest,)).fetchone() is not None

    def revoke(self, name: str, when: float) -> KeyInfo:
        def work(conn: Conn) -> tuple[Any, ...] | None:
            return conn.execute(
                "UPDATE recloop_api_keys SET revoked = %s WHERE name = %s AND revoked IS NULL "
                "RETURNING name, scope, created, revoked",
                (when, name),
            ).fetchone()

        row = self._db.write(work)
        if row is None:
            raise UnknownKeyError(f"no active key named {name!r}")
        return _info(row)

    def all_keys(self) -> list[KeyInfo]:
        sql = "SELECT name, scope, created, revoked FROM recloop_api_keys ORDER BY id"
        return [_info(r) for r in self._db.read(lambda c: c.execute(sql).fetchall())]

    def active(self) -> tuple[dict[bytes, tuple[str, Scope]], bool]:
        sql = "SELECT digest, name, scope, revoked IS NULL FROM recloop_api_keys"
        rows = self._db.read(lambda c: c.execute(sql).fetchall())
        table = {bytes(r[0]): (str(r[1]), check_scope(str(r[2]))) for r in rows if r[3]}
        return table, bool(rows)

    def audit(self, entry: AuditEntry) -> None:
        def work(conn: Conn) -> None:
            row = conn.execute(
                "INSERT INTO recloop_audit (time, key, method, path, status, loop) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING seq",
                (entry.time, entry.key, entry.method, entry.path, entry.status, entry.loop),
            ).fetchone()
            if row is not None and int(row[0]) > self.keep:
                conn.execute("DELETE FROM recloop_audit WHERE seq <= %s", (row[0] - self.keep,))

        self._db.write(work)

    def audit_entries(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        sql = (
            "SELECT seq, time, key, method, path, status, loop FROM recloop_audit "
            "WHERE seq < %s ORDER BY seq DESC LIMIT %s"
        )
        params = (before if before is not None else 2**63 - 1, limit)
        rows = self._db.read(lambda c: c.execute(sql, params).fetchall())
        return [
            AuditEntry(float(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]), r[6], int(r[0]))
            for r in rows
        ]

    def close(self) -> None:
        self._db.close()
