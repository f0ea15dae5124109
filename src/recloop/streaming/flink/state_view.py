"""What the job writes besides recommendations: its latest user states, dead letters and
log position, in the embedded runner's snapshot schema, so that the same reader
(``SqliteStreamState``) serves both runners."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from recloop.stores.sqlite_common import connect
from recloop.stores.sqlite_stream import SqliteStreamState
from recloop.streaming.state import UserState

STATE_VIEW = "flink-state.db"


class FlinkStateView:
    """The job's latest user states, dead letters and offset, in the embedded runner's
    snapshot schema (``SqliteStreamState`` reads it). Written from the global operator."""

    def __init__(self, path: Path) -> None:
        SqliteStreamState(path).close()  # creates the tables
        self._conn = connect(path)

    def write(
        self,
        users: Sequence[tuple[str, str]],
        dead: Sequence[tuple[str, str]],
        meta: dict[str, Any],
    ) -> None:
        """``users``: (user_id, UserState JSON); ``dead``: (event_id, event JSON)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO users(user_id, body) VALUES (?, ?) ON CONFLICT(user_id)"
                " DO UPDATE SET body = excluded.body",
                users,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO dead_letters(event_id, reason, body)"
                " VALUES (?, 'too-late', ?)",
                dead,
            )
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value",
                [(k, orjson.dumps(v)) for k, v in meta.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


def read_states(data_dir: Path) -> tuple[int, dict[str, UserState], dict[str, Any]]:
    """(offset, user states, meta) as the Flink job last wrote them."""
    store = SqliteStreamState(Path(data_dir) / "_stream" / STATE_VIEW)
    try:
        offset, users, meta = store.load()
    finally:
        store.close()
    return offset, {u: UserState.from_dict(b) for u, b in users.items()}, meta
