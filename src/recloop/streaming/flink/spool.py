"""The spool: the durable log (``events.db``) copied into JSON-lines files for FileSource.

Flink 2.x here has no Kafka/JDBC connector and no Python-native source, so events travel
to the job as files in ``_stream/spool``. FileSource never re-reads a file and skips names
starting with ``.`` or ``_``: each batch is written as a hidden temp file and renamed into
place, named by its first and last log offset. FileSource also meets files in no particular
order, so each line carries the chains the job uses to put events back in log order.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from recloop.stores.sqlite_common import connect
from recloop.stores.sqlite_stream import SqliteBehaviourLog

SPOOL_PREFIX = "events-"
SPOOL_DB = "_spool.db"
"""The spool's offset and each user's last offset (a leading ``_``: FileSource skips it)."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def spool_name(first: int, last: int) -> str:
    return f"{SPOOL_PREFIX}{first:012d}-{last:012d}.jsonl"


class Spooler:
    """Copies the durable log into the spool. Each line is the event's ``to_dict`` plus
    ``offset``, ``prev`` (the log offset before it: the log may have gaps) and ``prev_user``
    (the offset of the same user's previous event, 0 for their first): the chains the job
    uses to meet events in log order. The spool's offset and each user's last offset are
    kept in ``_spool.db``, committed after the file is renamed into place; a file found
    beyond the offset after a crash is taken up again."""

    def __init__(
        self, log: SqliteBehaviourLog, spool_dir: Path, batch: int = 5000, after_offset: int = 0
    ) -> None:
        self.log = log
        self.dir = Path(spool_dir)
        self.batch = batch
        self._conn = connect(self.dir / SPOOL_DB)
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, last INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """
        )
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'offset'").fetchone()
        self.offset = after_offset if row is None else int(row[0])
        self._recover()

    def _recover(self) -> None:
        while True:
            found = sorted(self.dir.glob(f"{SPOOL_PREFIX}{self.offset + 1:012d}-*.jsonl"))
            if not found:
                return
            last: dict[str, int] = {}
            with found[-1].open("rb") as handle:
                for line in handle:
                    raw = orjson.loads(line)
                    last[raw["user_id"]] = int(raw["offset"])
            self._commit(last, int(found[-1].name[len(SPOOL_PREFIX) + 13 : -len(".jsonl")]))

    def _commit(self, last: dict[str, int], offset: int) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO users(user_id, last) VALUES (?, ?) ON CONFLICT(user_id)"
                " DO UPDATE SET last = excluded.last",
                last.items(),
            )
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('offset', ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value",
                (offset,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.offset = offset

    def _user_offsets(self, users: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for i in range(0, len(users), 500):
            chunk = users[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                self._conn.execute(
                    f"SELECT user_id, last FROM users WHERE user_id IN ({marks})", chunk
                ).fetchall()
            )
        return found

    def step(self) -> int:
        """Spool at most one file of new events; returns how many."""
        rows = self.log.read(self.offset, self.batch)
        if not rows:
            return 0
        last = self._user_offsets(list({e.user_id for _, e in rows}))
        lines = []
        prev = self.offset
        for offset, event in rows:
            user = event.user_id
            body = {"offset": offset, "prev": prev, "prev_user": last.get(user, 0)}
            lines.append(orjson.dumps({**body, **event.to_dict()}))
            last[user] = prev = offset
        _atomic_write(self.dir / spool_name(rows[0][0], prev), b"\n".join(lines) + b"\n")
        self._commit({e.user_id: last[e.user_id] for _, e in rows}, prev)
        return len(rows)

    def run(self) -> int:
        """Spool everything logged so far; returns the new offset."""
        while self.step():
            pass
        return self.offset

    def close(self) -> None:
        self._conn.close()


def spool(
    log: SqliteBehaviourLog, spool_dir: Path, after_offset: int = 0, batch: int = 5000
) -> int:
    """Copy the log's new events into the spool, ``batch`` per file; returns the new offset.
    A new spool starts after ``after_offset``; an existing one goes on from its own."""
    spooler = Spooler(log, spool_dir, batch, after_offset)
    try:
        return spooler.run()
    finally:
        spooler.close()


def spool_base(spool_dir: Path) -> int:
    """The offset a fresh job starts after: just before the oldest spooled event."""
    files = sorted(Path(spool_dir).glob(f"{SPOOL_PREFIX}*.jsonl"))
    if files:
        with files[0].open("rb") as handle:
            return int(orjson.loads(handle.readline())["prev"])
    if not (Path(spool_dir) / SPOOL_DB).exists():
        return 0
    conn = connect(Path(spool_dir) / SPOOL_DB)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'offset'").fetchone()
    finally:
        conn.close()
    return 0 if row is None else int(row[0])
