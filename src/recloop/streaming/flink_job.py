"""The stream as an Apache Flink (PyFlink DataStream) job: the same pure logic as the
embedded runner (``UserStream.add`` keyed by user, then ``StreamProcessor.after_update``),
with its state in Flink managed state, checkpointed and restorable, and the same results:
identical user states and lists (items, scores, versions) from the same log.

Pipeline (``apache-flink`` 2.3, ``python.execution-mode=thread``), and why::

    parallelism 1 (the default):
    spool/*.jsonl --FileSource--> keyBy(0) --> stream (users + global in one operator)
    parallelism > 1:
    spool/*.jsonl --FileSource--> keyBy(user) --> users ------> keyBy(0) --> global
    (from events.db)                              (UserStream)              (popularity, lists,
                                                                             writes the store)

* **Source.** Flink 2.x here has no Kafka/JDBC connector and no Python-native source, so
  events travel from the durable log (``events.db``) to Flink as JSON-lines files in a
  spool directory (``_stream/spool``): :class:`Spooler` writes each batch as a hidden temp
  file renamed into place (FileSource never re-reads a file and skips names starting with
  ``.`` or ``_``), named by its first and last log offset. A bounded job reads the files
  there and finishes; a continuous one (``monitor_continuously``) picks up new ones.
* **Log order, without a sequencer stage.** FileSource reads files in no particular order
  (measured: shuffled; its split assigner keeps them in a hash set), yet which events are
  too late (per user) and popularity -- hence every score -- depend on the order events are
  met. Each line carries ``prev`` (the log offset before it) and ``prev_user`` (the same
  user's previous offset): ``users`` places a user's events in their log order, holding
  early ones in keyed MapState; ``global`` meets all events in log order the same way. A
  separate keyed sequencer stage did the same at a cost per event (each keyed Python
  stage costs that in thread mode: README, "Measurements behind the code"); this way
  needs none, and stays exact with the users operator at parallelism > 1.
* **users** (keyed by ``user_id``): ``UserStream.add`` with the user's stream in a
  ``ValueState`` (its ``to_dict`` as JSON), and a bounded cache of decoded streams (a
  restore calls ``open`` again, which empties it). Every event goes on (applied with the new
  ``UserState`` JSON, late as a dead letter, duplicate) so ``global`` sees every offset.
* **global** (keyed by a constant, parallelism 1): popularity in managed state (``MapState``
  item -> scaled score; a ``ValueState`` with anchor, event count, newest event time and
  log position), rebuilt into ``DecayedPopularity`` on the first element after ``open``;
  then ``StreamProcessor.after_update``.
* **stream** (parallelism 1: both halves fused in one operator keyed by a constant): it
  meets every event in log order by ``prev`` (so each user's too: no ``prev_user`` chain),
  keeps each user's ``UserStream`` JSON in ``MapState`` (user -> ``to_dict``; decoded
  streams cached, emptied by a restore's ``open``), then runs ``global``'s half on the live
  ``UserState``. Why: every keyed Python stage costs time per event in thread mode, and the
  two-stage form also encoded the user state to pass it on and decoded event and state
  again downstream; fused, the job runs about 1.5 times the events per second
  (``benchmarks/stream_flink.py``; README, "Measurements behind the code"). All state
  is still Flink managed state; only the set of users changed since the last view write
  is kept in memory (the stream objects), and after a restore every user in ``MapState``
  is written to the view again (an idempotent upsert). Its state (uid ``recloop-stream``)
  is not the two-stage form's (``recloop-users``/``recloop-global``): a checkpoint
  restores only into a job of the same form, i.e. parallelism 1 to 1, or > 1 to > 1
  (rescaling works there).
* **Sink: inside ``global`` (or ``stream``).** Lists, user states and dead letters wait in
  managed state (newest per user; ``stream``'s user states: its ``MapState`` of streams)
  and are upserted in batches: lists with
  ``put_many`` into the store the embedded runner uses (``open_recommendations``: ``recs.db``
  or Redis; version-guarded, so replays after a restore are harmless) on a processing-time
  timer (``flush_ms``; later under load, so flushing stays a small part of the time), user
  states (``UserState.to_dict``), dead letters and the position to
  ``_stream/flink-state.db`` as often as embedded snapshots (``snapshot_every_seconds``),
  everything at the end of input (an event-time timer at the end of time). Why: Python
  functions get no checkpoint hook, so only a batch kept in managed state survives a kill
  -9 between checkpoint and write; a per-record Python sink would commit SQLite once per
  event, and a FileSink would need a loader process and a checkpoint of delay.
* **Thread mode**: about 8x process mode. The embedded interpreter reads no ``.pth`` files,
  so a local job passes this interpreter's ``sys.path`` on (``python.pythonpath``). At
  parallelism 1 the keyed stage is chained to the source in one task
  (``reinterpretAsKeyedStream`` instead of a shuffle); at parallelism > 1 both ``keyBy``
  are shuffles.

Spool files are replayable history: a fresh (unrestored) job reads them all from the first;
prune only files older than the retained checkpoint you will restore from. Users are not
expired by TTL in the Flink job.

Run it with ``recloop stream --runner flink`` (a local MiniCluster). On a cluster, the spool
and SQLite files must be on storage every TaskManager sees (or use Redis for the lists)::

    python -m recloop.streaming.flink_job --spool-only --data-dir /shared/data &
    flink run -pyexec /opt/venv/bin/python -py "$(python -c \\
        'import recloop.streaming.flink_job as m; print(m.__file__)')" \\
        --data-dir /shared/data --checkpoint-dir /shared/checkpoints
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from recloop.core.types import BehaviourEvent, Recommendation
from recloop.settings import StreamSettings
from recloop.stores.sqlite_common import connect
from recloop.stores.sqlite_stream import SqliteBehaviourLog, SqliteStreamState
from recloop.streaming.popularity import DecayedPopularity
from recloop.streaming.state import UserState, UserStream

SPOOL_PREFIX = "events-"
SPOOL_DB = "_spool.db"
"""The spool's offset and each user's last offset (a leading ``_``: FileSource skips it)."""
STATE_VIEW = "flink-state.db"
_END_OF_TIME = 2**63 - 2  # an event-time timer here fires only at the end of bounded input
_CACHE_USERS = 100_000


def have_pyflink() -> bool:
    try:
        importlib.import_module("pyflink.datastream")
    except ImportError:
        return False
    return True


def _pf(module: str) -> Any:
    """A pyflink module (imported late: it is an optional extra, and untyped)."""
    return importlib.import_module(f"pyflink.{module}")


# -- the spool: durable log -> JSON-lines files -------------------------------------------
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


# -- what the job writes besides recommendations --------------------------------------------
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


def _user_state(raw: dict[str, Any]) -> UserState:
    """``UserState.from_dict`` without its conversions (the JSON came from ``to_dict``):
    the global half reads only counts, recent items, version and times."""
    return UserState(
        raw["user_id"],
        raw["version"],
        raw["last_items"],
        raw["counts"],
        raw["first_seen"],
        raw["last_seen"],
        raw["session_start"],
        raw["sessions"],
        raw["activeness"],
    )


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete retained checkpoint (``<job-id>/chk-N`` with ``_metadata``)."""
    found = [p.parent for p in Path(checkpoint_dir).glob("*/chk-*/_metadata")]
    return max(found, key=lambda p: p.joinpath("_metadata").stat().st_mtime, default=None)


# -- the operators ---------------------------------------------------------------------------
def _functions(
    settings: dict[str, Any], data_dir: str, flush_ms: int, flush_events: int, view_ms: int
) -> Any:
    """The job's two PyFlink functions (classes built here: pyflink is imported late)."""
    keyed_process_function: Any = _pf("datastream").KeyedProcessFunction
    state = _pf("datastream.state")
    types = _pf("common").Types

    def with_ttl(descriptor: Any) -> Any:
        """Flink's own state TTL (processing time since the last write) frees idle users'
        storage; the TTL's meaning -- an idle user starts afresh -- is ``UserStream.add``'s,
        by event time, the same in both runners."""
        ttl_ms = int(StreamSettings(**settings).ttl_seconds * 1000)
        config = (
            state.StateTtlConfig.new_builder(_pf("common.time").Time.milliseconds(ttl_ms))
            .update_ttl_on_create_and_write()
            .never_return_expired()
            .build()
        )
        descriptor.enable_time_to_live(config)
        return descriptor

    class Users(keyed_process_function):  # type: ignore[misc]
        """The keyed half: ``UserStream.add``, meeting each user's events in log order (an
        event whose ``prev_user`` has not come yet waits in ``held``). Emits, for every event,
        ``kind \\t line \\t UserState JSON`` (kind: applied, late or duplicate), so that the
        global half sees every offset."""

        def open(self, ctx: Any) -> None:
            from recloop.streaming.service import state_config

            self.cfg = state_config(StreamSettings(**settings))
            # "last-offset \t held-count \t UserState JSON \t pending JSON" (UserStream.to_dict)
            self.state = ctx.get_state(with_ttl(state.ValueStateDescriptor("user", types.STRING())))
            self.held = ctx.get_map_state(
                state.MapStateDescriptor("held", types.LONG(), types.STRING())
            )
            self.cache: dict[str, list[Any]] = {}

        def process_element(self, line: str, ctx: Any) -> Iterator[str]:
            raw = orjson.loads(line)
            user = raw["user_id"]
            entry = self.cache.get(user)
            if entry is None:
                value = self.state.value()
                if value:
                    last, held, state_json, pending_json = value.split("\t", 3)
                    stream = UserStream.new(user)
                    if state_json:  # else only held events so far
                        raw_stream = {
                            "state": orjson.loads(state_json),
                            "pending": orjson.loads(pending_json),
                        }
                        stream = UserStream.from_dict(raw_stream, self.cfg)
                    entry = [int(last), int(held), stream, state_json, pending_json]
                else:
                    entry = [0, 0, UserStream.new(user), "", "[]"]
                if len(self.cache) >= _CACHE_USERS:
                    self.cache.clear()
                self.cache[user] = entry
            offset, prev = int(raw["offset"]), int(raw["prev_user"])
            if offset <= entry[0]:
                return  # read again (a fresh job over an old spool): done already
            if prev != entry[0]:
                if not self.held.contains(prev):
                    self.held.put(prev, line)
                    entry[1] += 1
                    self._save(entry)
                return
            yield self._place(entry, raw, line)
            while entry[1]:
                nxt = self.held.get(entry[0])
                if nxt is None:
                    break
                self.held.remove(entry[0])
                entry[1] -= 1
                yield self._place(entry, orjson.loads(nxt), nxt)
            self._save(entry)

        def _save(self, entry: list[Any]) -> None:
            self.state.update(f"{entry[0]}\t{entry[1]}\t{entry[3]}\t{entry[4]}")

        def _place(self, entry: list[Any], raw: dict[str, Any], line: str) -> str:
            entry[0] = int(raw["offset"])
            stream: UserStream = entry[2]
            outcome = stream.add(BehaviourEvent.from_dict(raw), self.cfg)
            if outcome == "applied":
                entry[3] = orjson.dumps(stream.state.to_dict()).decode()
                entry[4] = orjson.dumps(stream.to_dict()["pending"]).decode()
                return f"a\t{line}\t{entry[3]}"
            return f"{outcome[0]}\t{line}\t"

    class Global(keyed_process_function):  # type: ignore[misc]
        """The global half, meeting events in log order (by ``prev``; early ones wait in
        ``held``): popularity, trigger, policy. What it makes waits in managed state until
        written: lists every ``flush_ms`` (longer under load), user states and dead letters
        every ``view_ms`` (and at the end of input)."""

        def __init__(self, base: int) -> None:
            self.base = base

        def open(self, ctx: Any) -> None:
            from recloop.stores.factory import open_recommendations
            from recloop.streaming.service import make_processor

            stream_settings = StreamSettings(**settings)
            self.processor = make_processor(stream_settings)
            stream_dir = Path(data_dir) / "_stream"
            self.recs = open_recommendations(stream_settings, stream_dir)
            self.view = FlinkStateView(stream_dir / STATE_VIEW)
            desc = state.MapStateDescriptor
            self.scores = ctx.get_map_state(desc("popularity", types.STRING(), types.DOUBLE()))
            self.meta = ctx.get_state(state.ValueStateDescriptor("meta", types.STRING()))
            self.held_state = ctx.get_map_state(desc("held", types.LONG(), types.STRING()))
            # user -> Recommendation JSON; user -> UserState JSON, "\\0" + event id -> dead
            # letter; each with a mirror here (the Recommendation objects themselves until
            # a restore)
            self.recs_state = ctx.get_map_state(desc("recs", types.STRING(), types.STRING()))
            self.users_state = ctx.get_map_state(desc("users", types.STRING(), types.STRING()))
            self.pending_recs: dict[str, Recommendation | str] = {}
            self.pending_users: dict[str, str | UserStream] = {}
            self.held: dict[int, str] = {}
            self.loaded = False
            self.anchor: float | None = None
            self.newest = 0.0
            self.last = self.base
            self.timer_at = 0  # the earliest flush timer set, and whether it is for lists
            self.recs_armed = False
            self.flushed_at = 0.0  # when the last flush ended (ms) and what it took
            self.flush_cost = 0.0
            self.viewed_at = time.time()
            self.last_popular = 0.0
            self.first_at = 0.0  # wall time of the first element since open (for rates)
            self.seen = 0

        def _load(self, ctx: Any) -> None:
            """After open: popularity, position and batches from managed state (a restore)."""
            self.loaded = True
            meta = self.meta.value()
            if meta:
                anchor, events, self.newest, self.last = orjson.loads(meta)
                restored = DecayedPopularity(
                    self.processor.popularity.half_life_seconds,
                    self.processor.popularity.weights,
                    anchor,
                    {k: float(v) for k, v in self.scores.items()},
                    int(events),
                )
                self.processor.popularity.load(restored)
                self.anchor = anchor
            self.pending_recs = dict(self.recs_state.items())
            self.pending_users = dict(self.users_state.items())
            self.held = {int(k): v for k, v in self.held_state.items()}
            ctx.timer_service().register_event_time_timer(_END_OF_TIME)
            self._arm(ctx)

        def _arm(self, ctx: Any) -> None:
            """A flush ``flush_ms`` from now, or later under load: flushing takes at most
            about 1/30 of the time, so batches grow when busy (a user's newest list is
            written once per batch: fewer rows per event)."""
            timers = ctx.timer_service()
            now = timers.current_processing_time()
            if self.pending_recs:
                backoff = self.flushed_at + 30 * self.flush_cost - now
                at = now + max(flush_ms, min(int(backoff), 1000))
                self.recs_armed = True
            elif self.pending_users:
                at = int(self.viewed_at * 1000) + view_ms
            else:
                return
            if not self.timer_at or at < self.timer_at:  # a later one left set flushes too
                self.timer_at = at
                timers.register_processing_time_timer(at)

        def _decode(self, value: str) -> tuple[dict[str, Any], Any]:
            """(the event with its offsets, what :meth:`_apply` needs besides)."""
            kind, line, body = value.split("\t", 2)
            return orjson.loads(line), (kind, body)

        def _apply(self, raw: dict[str, Any], extra: Any) -> None:
            kind, body = extra
            self._step(kind, raw, body)

        def process_element(self, value: str, ctx: Any) -> Iterator[int]:
            """Meet events in log order (an early one waits in ``held`` for the one before
            it), apply each, then save the position and flush or arm the timer."""
            if not self.loaded:
                self._load(ctx)
            if not self.seen:
                self.first_at = time.time()
            self.seen += 1
            raw, extra = self._decode(value)
            offset, prev = int(raw["offset"]), int(raw["prev"])
            if offset <= self.last or prev in self.held:
                return iter(())  # read again: done already
            if prev != self.last:
                self.held[prev] = value
                self.held_state.put(prev, value)
                return iter(())
            self._apply(raw, extra)
            while self.last in self.held:
                value = self.held.pop(self.last)
                self.held_state.remove(self.last)
                self._apply(*self._decode(value))
            pop = self.processor.popularity
            self.meta.update(
                orjson.dumps([pop.anchor, pop.events, self.newest, self.last]).decode()
            )
            if len(self.pending_recs) >= flush_events:
                self._flush(ctx)
                self._arm(ctx)
            elif not self.timer_at or (self.pending_recs and not self.recs_armed):
                self._arm(ctx)
            return iter(())

        def _step(self, kind: str, raw: dict[str, Any], body: str) -> None:
            self.last = int(raw["offset"])
            if kind == "l":
                key = "\0" + raw["event_id"]
                self.pending_users[key] = text = orjson.dumps(raw).decode()
                self.users_state.put(key, text)
            if kind != "a":
                return
            event = BehaviourEvent.from_dict(raw)
            rec = self.processor.after_update(_user_state(orjson.loads(body)), event)
            pop = self.processor.popularity
            if pop.anchor != self.anchor:  # first event, or a rebase: all scores moved
                self.anchor = pop.anchor
                self.scores.put_all(dict(pop.scaled))
            else:
                self.scores.put(event.item_id, pop.scaled[event.item_id])
            self.newest = max(self.newest, event.timestamp)
            user = event.user_id
            self.pending_users[user] = body
            self.users_state.put(user, body)
            if rec is not None:
                self.pending_recs[user] = rec
                self.recs_state.put(user, orjson.dumps(rec.to_dict()).decode())

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[int]:
            if not self.loaded:
                self._load(ctx)
            self._flush(ctx, final=timestamp >= _END_OF_TIME)
            self.timer_at, self.recs_armed = 0, False
            self._arm(ctx)
            return iter(())

        def _flush(self, ctx: Any | None, final: bool = False) -> None:
            """Write the lists (and, when due, the user states); then forget them."""
            began = time.time()
            if self.pending_recs:
                recs = [
                    r
                    if isinstance(r, Recommendation)
                    else Recommendation.from_dict(orjson.loads(r))
                    for r in self.pending_recs.values()
                ]
                self.recs.put_many(recs, began)
                self.pending_recs = {}
                if ctx is not None:
                    self.recs_state.clear()
            if final or began - self.viewed_at >= view_ms / 1000:
                self._write_view(final)
                self.pending_users = {}
                if ctx is not None:
                    self.users_state.clear()
                self.viewed_at = time.time()
            if self.processor.popularity.anchor is not None and (
                final or began - self.last_popular >= 1.0
            ):
                self.recs.put_popular(self.processor.popular(self.newest), began)
                self.last_popular = began
            now = time.time()
            self.flushed_at = now * 1000
            self.flush_cost = (now - began) * 1000

        def _write_view(self, final: bool) -> None:
            users: list[tuple[str, str]] = []
            dead: list[tuple[str, str]] = []
            for key, text in self.pending_users.items():
                if isinstance(text, UserStream):
                    users.append((key, orjson.dumps(text.state.to_dict()).decode()))
                elif key.startswith("\0"):
                    dead.append((key[1:], text))
                else:
                    users.append((key, text))
            meta: dict[str, Any] = {
                "runner": "flink",
                "offset": self.last,
                "newest_event_time": self.newest,
                "settings": settings,
                "first_element_at": self.first_at,
                "elements_since_open": self.seen,
                "flushed_at": time.time(),
            }
            if final or time.time() - self.last_popular >= 10.0:
                meta["popularity"] = self.processor.popularity.to_dict()
            self.view.write(users, dead, meta)

        def close(self) -> None:
            if self.pending_recs or self.pending_users:  # normally written at end of input
                self._flush(None, final=True)
            self.recs.close()
            self.view.close()

    class Fused(Global):
        """Both halves in one operator (parallelism 1; keyed by a constant): events met in
        log order (by ``prev``), each user's stream in ``MapState`` (user -> ``UserStream``
        JSON) with the decoded streams cached, then the global half as in :class:`Global`.
        Users whose state changed wait in memory for the view (the stream objects
        themselves); after a restore every user is written to it again."""

        def open(self, ctx: Any) -> None:
            from recloop.streaming.service import state_config

            super().open(ctx)
            self.cfg = state_config(StreamSettings(**settings))
            desc = state.MapStateDescriptor("streams", types.STRING(), types.STRING())
            self.streams = ctx.get_map_state(with_ttl(desc))
            self.cache: dict[str, UserStream] = {}

        def _load(self, ctx: Any) -> None:
            super()._load(ctx)  # dead letters only: users are not mirrored (see below)
            for user, text in self.streams.items():
                state_json = orjson.dumps(orjson.loads(text)["state"]).decode()
                self.pending_users.setdefault(user, state_json)

        def _decode(self, value: str) -> tuple[dict[str, Any], Any]:
            return orjson.loads(value), None  # spool lines: the event itself

        def _apply(self, raw: dict[str, Any], extra: Any) -> None:
            self._place(raw)

        def _place(self, raw: dict[str, Any]) -> None:
            self.last = raw["offset"]
            user = raw["user_id"]
            stream = self.cache.get(user)
            if stream is None:
                text = self.streams.get(user)
                if text is None:
                    stream = UserStream.new(user)
                else:
                    stream = UserStream.from_dict(orjson.loads(text), self.cfg)
                if len(self.cache) >= _CACHE_USERS:
                    self.cache.clear()
                self.cache[user] = stream
            event = BehaviourEvent.from_dict(raw)
            outcome = stream.add(event, self.cfg)
            if outcome != "applied":
                if outcome == "late":
                    key = "\0" + raw["event_id"]
                    self.pending_users[key] = text = orjson.dumps(raw).decode()
                    self.users_state.put(key, text)
                return
            self.streams.put(user, orjson.dumps(stream.to_dict()).decode())
            rec = self.processor.after_update(stream.state, event)
            pop = self.processor.popularity
            if pop.anchor != self.anchor:  # first event, or a rebase: all scores moved
                self.anchor = pop.anchor
                self.scores.put_all(dict(pop.scaled))
            else:
                self.scores.put(event.item_id, pop.scaled[event.item_id])
            self.newest = max(self.newest, event.timestamp)
            self.pending_users[user] = stream
            if rec is not None:
                self.pending_recs[user] = rec
                self.recs_state.put(user, orjson.dumps(rec.to_dict()).decode())

    return Users, Global, Fused


# -- the job -------------------------------------------------------------------------------
def build_job(
    env: Any,
    settings: StreamSettings,
    data_dir: Path,
    *,
    bounded: bool,
    parallelism: int = 1,
    monitor_ms: int = 50,
    flush_ms: int = 20,
    flush_events: int = 5000,
) -> None:
    """Add the pipeline to a ``StreamExecutionEnvironment`` (also for ``flink run``)."""
    common = _pf("common")
    fs = _pf("datastream.connectors.file_system")
    types = common.Types
    spool_dir = Path(data_dir).resolve() / "_stream" / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    users, global_, fused = _functions(
        settings.model_dump(),
        str(Path(data_dir).resolve()),
        flush_ms,
        flush_events,
        int(settings.snapshot_every_seconds * 1000),  # user states: as often as snapshots
    )
    builder = fs.FileSource.for_record_stream_format(
        fs.StreamFormat.text_line_format(), str(spool_dir)
    )
    if not bounded:
        builder = builder.monitor_continuously(common.Duration.of_millis(monitor_ms))
    lines = (
        env.from_source(builder.build(), common.WatermarkStrategy.no_watermarks(), "spool")
        .uid("recloop-spool")
        .set_parallelism(1)
    )
    base = spool_base(spool_dir)
    if parallelism == 1:  # both halves in one operator: one keyed Python stage, not two
        written = (
            _forward_key_by(lines, lambda _: 0, types.INT())
            .process(fused(base), types.INT())
            .uid("recloop-stream")
            .name("stream")
            .set_parallelism(1)
        )
    else:

        def user_of(line: str) -> str:
            return str(orjson.loads(line)["user_id"])

        placed = (
            lines.key_by(user_of, key_type=types.STRING())
            .process(users(), types.STRING())
            .uid("recloop-users")
            .name("users")
            .set_parallelism(parallelism)
        )
        written = (
            placed.key_by(lambda _: 0, key_type=types.INT())
            .process(global_(base), types.INT())
            .uid("recloop-global")
            .name("global")
            .set_parallelism(1)
        )
    jvm = _pf("java_gateway").get_gateway().jvm
    sink = _pf("datastream.connectors.base").Sink(
        jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
    )
    written.sink_to(sink).name("done").set_parallelism(1)


def _forward_key_by(stream: Any, key: Any, key_type: Any) -> Any:
    """``stream.key_by(key)`` without the shuffle, for a stream of parallelism 1 whose next
    operator has parallelism 1 too (every key is in the one subtask): Flink then chains the
    two operators in one task instead of passing each record through the network stack
    (less time per event and stage: README, "Measurements behind the code"). PyFlink's
    ``key_by``, with Flink's ``reinterpretAsKeyedStream`` in place of ``keyBy``."""
    common = _pf("common")
    jvm = _pf("java_gateway").get_gateway().jvm
    types = common.Types
    value_type = _pf("common.typeinfo")._from_java_type(
        stream._j_data_stream.getTransformation().getOutputType()
    )

    process_function: Any = _pf("datastream").ProcessFunction

    class AddKey(process_function):  # type: ignore[misc]
        def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
            yield common.Row(key(value), value)

    with_key = stream.process(AddKey(), output_type=types.ROW([key_type, value_type]))
    keyed = jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
        with_key._j_data_stream,
        jvm.KeyByKeySelector(),
        types.ROW([key_type]).get_java_type_info(),
    )
    return _pf("datastream.data_stream").KeyedStream(keyed, value_type, stream)


def flink_config(
    *,
    checkpoint_dir: Path | None,
    restore_from: Path | None,
    checkpoint_interval_ms: int = 10_000,
    local: bool = True,
) -> Any:
    """Thread mode, checkpoints kept after cancel (and a kill), and the restore path; a
    local job also runs its Python with this interpreter and its packages."""
    cfg = _pf("common").Configuration()
    cfg.set_string("python.execution-mode", "thread")
    if local:
        cfg.set_string("python.executable", sys.executable)
        cfg.set_string("python.client.executable", sys.executable)
        # the embedded interpreter reads no .pth files: give it this interpreter's packages
        cfg.set_string("python.pythonpath", os.pathsep.join(p for p in sys.path if p))
    cfg.set_string("pipeline.object-reuse", "true")  # records are never mutated downstream
    cfg.set_string("restart-strategy.type", "fixed-delay")
    cfg.set_string("restart-strategy.fixed-delay.attempts", "3")
    cfg.set_string("restart-strategy.fixed-delay.delay", "1 s")
    if checkpoint_dir is not None:
        cfg.set_string("execution.checkpointing.interval", f"{checkpoint_interval_ms} ms")
        cfg.set_string("execution.checkpointing.dir", Path(checkpoint_dir).resolve().as_uri())
        cfg.set_string(
            "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
        )
        cfg.set_string("execution.checkpointing.num-retained", "3")
    if restore_from is not None:
        path = Path(restore_from)
        if not (path / "_metadata").exists():
            found = latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"no retained checkpoint under {path}")
            path = found
        cfg.set_string("execution.state-recovery.path", path.resolve().as_uri())
    return cfg


def run_flink_job(
    settings: StreamSettings,
    data_dir: Path,
    *,
    bounded: bool,
    checkpoint_dir: Path | None,
    restore_from: Path | None,
    parallelism: int = 1,
    checkpoint_interval_ms: int = 10_000,
    stop: threading.Event | None = None,
    poll_seconds: float = 0.02,
    monitor_ms: int = 50,
    flush_ms: int = 20,
) -> None:
    """Spool the data dir's log and run the job on a local MiniCluster. Bounded: spool what
    is logged, process it, return. Continuous: keep spooling until ``stop`` is set (then
    cancel the job; retained checkpoints stay) or the job fails."""
    data_dir = Path(data_dir).resolve()
    stream_dir = data_dir / "_stream"
    spool_dir = stream_dir / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    events = SqliteBehaviourLog(stream_dir / "events.db")
    spooler: Spooler | None = None
    try:
        env = _pf("datastream").StreamExecutionEnvironment.get_execution_environment(
            flink_config(
                checkpoint_dir=checkpoint_dir,
                restore_from=restore_from,
                checkpoint_interval_ms=checkpoint_interval_ms,
            )
        )
        env.set_parallelism(parallelism)
        env.set_max_parallelism(128)
        env.set_buffer_timeout(5)
        build_job(
            env,
            settings,
            data_dir,
            bounded=bounded,
            parallelism=parallelism,
            monitor_ms=monitor_ms,
            flush_ms=flush_ms,
        )  # before spooling: a fresh job starts from the spool's oldest file
        spooler = Spooler(events, spool_dir)
        if bounded:
            spooler.run()
            env.execute("recloop-stream")
            return
        client = env.execute_async("recloop-stream")
        stop = stop or threading.Event()
        checked = time.monotonic()
        while not stop.wait(poll_seconds):
            spooler.run()
            if time.monotonic() - checked > 2.0:
                checked = time.monotonic()
                status = client.get_job_status().result().name
                if status in ("FAILED", "FINISHED", "CANCELED"):
                    client.get_job_execution_result().result()  # raises the failure
                    raise RuntimeError(f"the Flink job ended: {status}")
        client.cancel().result()
    finally:
        if spooler is not None:
            spooler.close()
        events.close()


def main(argv: Sequence[str] | None = None) -> None:
    """``flink run -py flink_job.py --data-dir ...`` (restore: ``flink run -s <chk-N>``), or
    ``python -m recloop.streaming.flink_job --spool-only`` to feed the spool."""
    parser = argparse.ArgumentParser(description="recloop's stream as a Flink job")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--bounded", action="store_true")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--spool-only", action="store_true", help="only feed the spool")
    args = parser.parse_args(argv)
    from recloop.settings import load_settings

    loaded = load_settings(args.config, data_dir=args.data_dir)
    stream_dir = loaded.data_dir / "_stream"
    if args.spool_only:
        spooler = Spooler(SqliteBehaviourLog(stream_dir / "events.db"), stream_dir / "spool")
        while True:
            spooler.run()
            time.sleep(0.02)
    env = _pf("datastream").StreamExecutionEnvironment.get_execution_environment(
        flink_config(
            checkpoint_dir=args.checkpoint_dir,
            restore_from=None,
            checkpoint_interval_ms=args.checkpoint_interval_ms,
            local=False,
        )
    )
    env.set_parallelism(args.parallelism)
    env.set_max_parallelism(128)
    env.set_buffer_timeout(5)
    build_job(env, loaded.stream, loaded.data_dir, bounded=args.bounded,
              parallelism=args.parallelism)  # fmt: skip
    env.execute("recloop-stream")


if __name__ == "__main__":
    main()
