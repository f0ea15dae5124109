"""The SQLite joined-example store (``joined.db``): joined examples and the consumers'
offsets, the joiner's offsets committed with its output. Files and schema:
:mod:`recloop.stores.sqlite_files`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from recloop.core.types import (
    DeadLetter,
    JoinedExample,
)
from recloop.log.codec import (
    decode_decision,
    encode_decision,
)
from recloop.stores.forget_common import REPLAY_KEY, forget_key
from recloop.stores.shared import (
    JoinedIteration,
)
from recloop.stores.sqlite_common import Durability
from recloop.stores.sqlite_files import (
    JOINED_SCHEMA,
    LETTERS_SCHEMA,
    LOG_FILE,
    immediate,
    insert_letters,
    joined_path,
    open_with_schema,
)


def open_joined(loop_dir: Path, durability: Durability = "process") -> SqliteJoinedStore:
    """A loop directory's joined store, its dead letters going to the log's file."""
    return SqliteJoinedStore(joined_path(loop_dir), durability, letters_path=loop_dir / LOG_FILE)


class SqliteJoinedStore(JoinedIteration):
    """Joined examples and consumer offsets; the joiner's offsets commit with its output.

    ``letters_path``: the event log's file, where the joiner's dead letters go (written
    just before the joined rows commit; a replay after a crash in between writes the same
    letters again, which their unique source offsets ignore). None keeps them in this
    store's own file (one file holding both, as before the split, or a store on its own).
    """

    def __init__(
        self, path: Path, durability: Durability = "process", letters_path: Path | None = None
    ) -> None:
        schema = JOINED_SCHEMA
        if letters_path is None or letters_path == path:
            schema += LETTERS_SCHEMA  # the dead letters live here
        self._conn = open_with_schema(path, durability, schema)
        self._letters = (
            None
            if letters_path is None or letters_path == path
            else open_with_schema(letters_path, durability, LETTERS_SCHEMA)
        )
        self._lock = threading.Lock()

    def commit_joined(
        self,
        examples: Sequence[JoinedExample],
        offsets: dict[str, int],
        letters: Sequence[DeadLetter],
    ) -> list[JoinedExample]:
        """Insert new examples (skipping event ids already joined), dead letters and offsets
        in one transaction; returns the inserted examples with their seq."""
        inserted: list[JoinedExample] = []
        with self._lock:
            letters = [d for d in letters if not self._is_forgotten(d.event_id)]
            if letters and self._letters is not None:
                with immediate(self._letters):  # its own, committed before the joined rows
                    insert_letters(self._letters, letters)
                letters = ()
            with immediate(self._conn):
                guard = self._conn.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone()
                for e in examples:
                    if guard is not None and self._is_forgotten(e.decision.event_id):
                        continue  # its user was forgotten while the joiner held it
                    # not INSERT OR IGNORE: an ignored insert would still consume a seq
                    # number, and consumers rely on seq being gap-free
                    if self._conn.execute(
                        "SELECT 1 FROM joined WHERE event_id = ?", (e.decision.event_id,)
                    ).fetchone():
                        continue
                    cur = self._conn.execute(
                        "INSERT INTO joined(event_id, joined_at, reward, n_rewards, "
                        "used_default, decision) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            e.decision.event_id,
                            e.joined_at,
                            e.reward,
                            e.n_rewards,
                            int(e.used_default),
                            e.body or encode_decision(e.decision),
                        ),
                    )
                    inserted.append(replace(e, seq=int(cur.lastrowid or 0)))
                if letters:
                    insert_letters(self._conn, letters)
                if guard is not None and REPLAY_KEY in offsets:  # no joiner holds these now
                    self._conn.execute(
                        "DELETE FROM forgotten WHERE log_end <= ?", (offsets[REPLAY_KEY],)
                    )
                self._conn.executemany(
                    "INSERT INTO offsets(name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    list(offsets.items()),
                )
        return inserted

    def _is_forgotten(self, event_id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM forgotten WHERE key = ?", (forget_key(event_id),)
        ).fetchone()
        return row is not None

    def offset(self, name: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM offsets WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def is_joined(self, event_id: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM joined WHERE event_id = ?", (event_id,)
            ).fetchone()
        return row is not None

    def read(self, after: int, limit: int) -> list[JoinedExample]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, joined_at, reward, n_rewards, used_default, decision FROM joined "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            JoinedExample(decode_decision(r[5]), r[2], r[3], bool(r[4]), r[1], seq=r[0])
            for r in rows
        ]

    def count(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM joined").fetchone()
        return int(row[0])

    def end_seq(self) -> int:
        with self._lock:
            row = self._conn.execute(  # the newest seq ever given: forgetting may delete it
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM joined), 0), COALESCE((SELECT seq "
                "FROM sqlite_sequence WHERE name = 'joined'), 0))"
            ).fetchone()
        return int(row[0] or 0)

    def delete_joined(self, through_seq: int, joined_before: float) -> int:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM joined WHERE seq <= ? AND joined_at < ? "
                "AND seq < (SELECT MAX(seq) FROM joined)",
                (through_seq, joined_before),
            )
        return int(cur.rowcount)

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO state(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def delete_state(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM state WHERE key = ?", (key,))

    def states(self, prefix: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM state WHERE key LIKE ? ORDER BY key", (prefix + "%",)
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._letters is not None:
                self._letters.close()
