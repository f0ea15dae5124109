"""Forgetting and raw-log retention on a loop's SQLite files (``loop.db``, ``joined.db``).

Its own connections, so it runs in any process beside a server and a pipeline that have
the same files open: every change is one ``BEGIN IMMEDIATE`` transaction (SQLite's write
lock), and offsets stay what they mean (see ``forget_common``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from recloop.stores.forget_common import (
    REPLAY_KEY,
    TOMBSTONE,
    LoopForgetCounts,
    MatchBody,
    chunks,
    forget_key,
)
from recloop.stores.sqlite_common import Durability, connect
from recloop.stores.sqlite_files import (
    JOINED_SCHEMA,
    LETTERS_SCHEMA,
    LOG_FILE,
    LOG_SCHEMA,
    immediate,
    joined_path,
)

SCAN = 1000
"""Rows per read while scanning for a user's decisions."""
RAW_BATCH = 5000
"""Offsets per transaction when deleting by age: the write lock is held briefly."""


class SqliteLogEraser:
    backend = "sqlite"

    def __init__(self, loop_dir: Path, durability: Durability = "process") -> None:
        """Nothing is opened (or created) for a loop that has no log yet."""
        log_path = loop_dir / LOG_FILE
        self._log: sqlite3.Connection | None = None
        self._joined: sqlite3.Connection | None = None
        if not log_path.exists():
            return
        jpath = joined_path(loop_dir)
        if jpath == log_path:  # a directory made before the split: one file holds both
            self._log = self._joined = connect(log_path, durability)
            self._log.executescript(LOG_SCHEMA + LETTERS_SCHEMA + JOINED_SCHEMA)
            return
        self._log = connect(log_path, durability)
        self._log.executescript(LOG_SCHEMA + LETTERS_SCHEMA)
        self._joined = connect(jpath, durability)
        self._joined.executescript(JOINED_SCHEMA)

    def find_events(self, needle: bytes, match: MatchBody) -> set[str]:
        if self._log is None or self._joined is None:
            return set()
        found: set[str] = set()
        scans = (
            (self._log, "SELECT offset, event_id, body FROM events WHERE offset > ? "
                        "AND kind = 'decision' AND instr(body, ?) > 0 ORDER BY offset LIMIT ?"),
            (self._joined, "SELECT seq, event_id, decision FROM joined WHERE seq > ? "
                           "AND instr(decision, ?) > 0 ORDER BY seq LIMIT ?"),
        )  # fmt: skip
        for conn, sql in scans:
            after = 0
            while True:
                rows = conn.execute(sql, (after, needle, SCAN)).fetchall()
                found.update(str(eid) for _, eid, body in rows if match(bytes(body)))
                if len(rows) < SCAN:
                    break
                after = int(rows[-1][0])
        return found

    def forget(self, event_ids: Sequence[str], now: float) -> LoopForgetCounts:
        counts = LoopForgetCounts()
        if self._log is None or self._joined is None:
            return counts
        ids = sorted(set(event_ids))
        log_end = int(self._log.execute("SELECT MAX(offset) FROM events").fetchone()[0] or 0)
        with immediate(self._joined):  # the guard first: a joiner commits nothing of these
            self._joined.executemany(
                "INSERT OR IGNORE INTO forgotten(key, log_end, at) VALUES (?, ?, ?)",
                [(forget_key(e), log_end, now) for e in ids],
            )
            for part in chunks(ids):
                marks = ",".join("?" * len(part))
                cur = self._joined.execute(f"DELETE FROM joined WHERE event_id IN ({marks})", part)
                counts.joined += cur.rowcount
            self._joined.execute(
                "DELETE FROM forgotten WHERE log_end <= (SELECT value FROM offsets WHERE name = ?)",
                (REPLAY_KEY,),
            )
        with immediate(self._log):
            newest = int(self._log.execute("SELECT MAX(offset) FROM events").fetchone()[0] or 0)
            for part in chunks(ids):
                marks = ",".join("?" * len(part))
                for kind, n in self._log.execute(
                    f"SELECT kind, COUNT(*) FROM events WHERE event_id IN ({marks}) "
                    "AND kind != ? GROUP BY kind",
                    (*part, TOMBSTONE),
                ).fetchall():
                    _add(counts, str(kind), int(n))
                self._log.execute(
                    f"DELETE FROM events WHERE event_id IN ({marks}) AND offset != ?",
                    (*part, newest),
                )
                self._log.execute(  # the newest row stays, emptied: its offset is not reused
                    f"UPDATE events SET kind = ?, event_id = '', dedup_key = NULL, deferred = 0, "
                    f"body = x'' WHERE offset = ? AND event_id IN ({marks})",
                    (TOMBSTONE, newest, *part),
                )
                cur = self._log.execute(
                    f"DELETE FROM dead_letters WHERE event_id IN ({marks})", part
                )
                counts.dead_letters += cur.rowcount
            self._log.execute(
                "DELETE FROM events WHERE kind = ? AND offset != ?", (TOMBSTONE, newest)
            )
        return counts

    def delete_raw(self, before: float) -> int:
        if self._log is None or self._joined is None:
            return 0
        row = self._joined.execute(
            "SELECT value FROM offsets WHERE name = ?", (REPLAY_KEY,)
        ).fetchone()
        replay = 0 if row is None else int(row[0])
        with immediate(self._joined):  # forgotten events no joiner can hold any more
            self._joined.execute("DELETE FROM forgotten WHERE log_end <= ?", (replay,))
        deleted = 0
        while True:
            with immediate(self._log):
                newest = self._log.execute("SELECT MAX(offset) FROM events").fetchone()[0]
                young = self._log.execute(  # stamps rise with offsets: stop at the first young
                    "SELECT offset FROM events WHERE ts >= ? ORDER BY offset LIMIT 1", (before,)
                ).fetchone()
                bound = min(replay, int(newest or 0) - 1)
                if young is not None:
                    bound = min(bound, int(young[0]) - 1)
                first = self._log.execute("SELECT MIN(offset) FROM events").fetchone()[0]
                if first is None or int(first) > bound:
                    if young is None and newest is not None and replay >= int(newest):
                        deleted += self._log.execute(  # the newest goes too, as a tombstone
                            "UPDATE events SET kind = ?, event_id = '', dedup_key = NULL, "
                            "deferred = 0, body = x'' WHERE offset = ? AND kind != ?",
                            (TOMBSTONE, newest, TOMBSTONE),
                        ).rowcount
                    cur = self._log.execute("DELETE FROM dead_letters WHERE ts < ?", (before,))
                    return deleted + cur.rowcount
                cur = self._log.execute(
                    "DELETE FROM events WHERE offset <= ?", (min(bound, int(first) + RAW_BATCH),)
                )
                deleted += cur.rowcount

    def close(self) -> None:
        if self._joined is not None and self._joined is not self._log:
            self._joined.close()
        if self._log is not None:
            self._log.close()
        self._log = self._joined = None


def _add(counts: LoopForgetCounts, kind: str, n: int) -> None:
    if kind == "decision":
        counts.decisions += n
    elif kind == "reward":
        counts.rewards += n
    elif kind == "activation":
        counts.activations += n
