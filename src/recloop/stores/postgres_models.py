"""PostgreSQL model store: versions numbered per loop, the newest ``keep`` kept (and any
pinned one), a pin for rollbacks. The same semantics as ``SqliteModelStore``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from recloop.core.errors import UnknownModelError
from recloop.core.protocols import ModelVersion, version_number
from recloop.stores.postgres_db import Conn, PostgresStore, lock_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS recloop_models (
    loop TEXT NOT NULL, version BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL,
    sha256 TEXT NOT NULL, meta BYTEA NOT NULL, blob BYTEA NOT NULL, PRIMARY KEY (loop, version));
CREATE TABLE IF NOT EXISTS recloop_model_pin (loop TEXT PRIMARY KEY, version BIGINT NOT NULL);
"""


def _version(row: Sequence[Any]) -> ModelVersion:
    return ModelVersion(str(row[0]), float(row[1]), str(row[2]), orjson.loads(bytes(row[3])))


class PostgresModelStore(PostgresStore):
    def __init__(self, url: str, loop: str, keep: int = 200) -> None:
        super().__init__(url, loop, SCHEMA)
        self.keep = keep

    def put(self, blob: bytes, meta: Mapping[str, Any]) -> ModelVersion:
        """A new version. A COMMIT without an answer is settled by looking for the version
        the INSERT returned, with this blob's digest and creation time: never stored twice."""
        digest = hashlib.sha256(blob).hexdigest()
        created = time.time()

        def work(conn: Conn) -> tuple[Any, ...]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.loop, "model"),))
            row = conn.execute(
                "INSERT INTO recloop_models(loop, version, created, sha256, meta, blob) "
                "SELECT %s, COALESCE(MAX(version), 0) + 1, %s, %s, %s, %s FROM recloop_models "
                "WHERE loop = %s RETURNING version, created, sha256, meta",
                (self.loop, created, digest, orjson.dumps(dict(meta)), blob, self.loop),
            ).fetchone()
            assert row is not None
            conn.execute(
                "DELETE FROM recloop_models WHERE loop = %s AND version <= %s AND version NOT IN "
                "(SELECT version FROM recloop_model_pin WHERE loop = %s)",
                (self.loop, int(row[0]) - self.keep, self.loop),
            )
            return tuple(row)

        def stored(conn: Conn, row: tuple[Any, ...]) -> bool:
            found = conn.execute(
                "SELECT 1 FROM recloop_models WHERE loop = %s AND version = %s "
                "AND created = %s AND sha256 = %s",
                (self.loop, row[0], created, digest),
            ).fetchone()
            return found is not None

        row = self._db.write(work, confirm=stored)
        return _version(row)

    def get(self, version: str) -> tuple[ModelVersion, bytes]:
        number = version_number(version)
        if number is None:
            raise UnknownModelError(f"no model version {version!r}")
        row = self._one(
            "SELECT version, created, sha256, meta, blob FROM recloop_models "
            "WHERE loop = %s AND version = %s",
            (self.loop, number),
        )
        if row is None:
            raise UnknownModelError(f"no model version {version!r}")
        return _version(row[:4]), bytes(row[4])

    def newest(self) -> ModelVersion | None:
        row = self._one(
            "SELECT version, created, sha256, meta FROM recloop_models WHERE loop = %s "
            "ORDER BY version DESC LIMIT 1",
            (self.loop,),
        )
        return None if row is None else _version(row)

    def pinned(self) -> str | None:
        row = self._one("SELECT version FROM recloop_model_pin WHERE loop = %s", (self.loop,))
        return None if row is None else str(row[0])

    def latest(self) -> ModelVersion | None:
        pinned = self.pinned()
        return self.get(pinned)[0] if pinned is not None else self.newest()

    def activate(self, version: str) -> None:
        number = int(self.get(version)[0].version)  # raises UnknownModelError
        self._db.write(
            lambda c: c.execute(
                "INSERT INTO recloop_model_pin(loop, version) VALUES (%s, %s) "
                "ON CONFLICT (loop) DO UPDATE SET version = EXCLUDED.version",
                (self.loop, number),
            ),
            idempotent=True,
        )

    def follow_newest(self) -> None:
        self._db.write(
            lambda c: c.execute("DELETE FROM recloop_model_pin WHERE loop = %s", (self.loop,)),
            idempotent=True,
        )

    def versions(self, limit: int = 100) -> list[ModelVersion]:
        rows = self._all(
            "SELECT version, created, sha256, meta FROM recloop_models WHERE loop = %s "
            "ORDER BY version DESC LIMIT %s",
            (self.loop, limit),
        )
        return [_version(r) for r in rows]
