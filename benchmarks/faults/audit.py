"""Count, from the backends themselves, what became of every record a client sent.

The invariants (DESIGN.md, "Nothing acknowledged is lost"):

* every acknowledged decision, reward and behaviour event is in its log exactly once; one
  whose outcome the client never learnt is there at most once; a refused one is absent;
* every logged decision is joined exactly once, with exactly its logged rewards, and no
  logged record is dead-lettered by the joiner;
* every model version learned seqs 1..learner_offset exactly once
  (``examples_learned == learner_offset``), and the newest version
  eventually covers every joined example; the stream eventually processes its whole log.

The stores are read directly (SQLite files, PostgreSQL tables, the JetStream stream), not
through the server under test.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.faults.load import Sent

LOOP = "default"


class Backend(Protocol):
    """What the audit reads: the loop's log, joined examples, models; the stream's log."""

    def log_rows(self) -> list[tuple[str, str, str | None]]:
        """(kind, event_id, dedup_key) of every logged record."""
        ...

    def joined_rows(self) -> list[tuple[int, str, float, int]]:
        """(seq, event_id, reward, n_rewards) in seq order."""
        ...

    def dropped(self) -> list[tuple[str, str]]:
        """Dead letters of logged records (the joiner dropped them): (reason, event_id)."""
        ...

    def model_metas(self) -> list[tuple[int, dict[str, Any]]]: ...

    def stream_event_ids(self) -> list[str] | None:
        """Every behaviour event id in the stream's log (None: no stream log to read)."""
        ...


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


@dataclass
class SqliteBackend:
    """The embedded default: ``DATA/default/{loop,joined,models}.db``, ``DATA/_stream``."""

    data_dir: Path
    stream_log: Callable[[], list[str]] | None = None
    """Where the stream's log is elsewhere (NATS): how to read its event ids."""

    def _loop(self, name: str) -> Path:
        return self.data_dir / LOOP / name

    def log_rows(self) -> list[tuple[str, str, str | None]]:
        return [
            (str(k), str(e), d)
            for k, e, d in _query(
                self._loop("loop.db"), "SELECT kind, event_id, dedup_key FROM events"
            )
        ]

    def joined_rows(self) -> list[tuple[int, str, float, int]]:
        sql = "SELECT seq, event_id, reward, n_rewards FROM joined ORDER BY seq"
        return [
            (int(s), str(e), float(r), int(n))
            for s, e, r, n in _query(self._loop("joined.db"), sql)
        ]

    def dropped(self) -> list[tuple[str, str]]:
        sql = "SELECT reason, event_id FROM dead_letters WHERE source_offset >= 0"
        return [(str(r), str(e)) for r, e in _query(self._loop("loop.db"), sql)]

    def model_metas(self) -> list[tuple[int, dict[str, Any]]]:
        rows = _query(self._loop("models.db"), "SELECT version, meta FROM models ORDER BY version")
        return [(int(v), json.loads(m)) for v, m in rows]

    def stream_event_ids(self) -> list[str] | None:
        if self.stream_log is not None:
            return self.stream_log()
        rows = _query(self.data_dir / "_stream" / "events.db", "SELECT event_id FROM events")
        return [str(e) for (e,) in rows]


@dataclass
class PostgresBackend:
    """``storage_url`` set: the ``recloop_*`` tables; the stream's log read by a callable."""

    url: str
    stream_log: Callable[[], list[str]] | None = None

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return list(conn.execute(sql, (LOOP,)).fetchall())

    def log_rows(self) -> list[tuple[str, str, str | None]]:
        sql = "SELECT kind, event_id, dedup_key FROM recloop_events WHERE loop = %s"
        return [(str(k), str(e), d) for k, e, d in self._rows(sql)]

    def joined_rows(self) -> list[tuple[int, str, float, int]]:
        sql = "SELECT seq, event_id, reward, n_rewards FROM recloop_joined WHERE loop = %s "
        return [
            (int(s), str(e), float(r), int(n)) for s, e, r, n in self._rows(sql + "ORDER BY seq")
        ]

    def dropped(self) -> list[tuple[str, str]]:
        sql = "SELECT reason, event_id FROM recloop_dead_letters WHERE loop = %s "
        return [(str(r), str(e)) for r, e in self._rows(sql + "AND source_offset >= 0")]

    def model_metas(self) -> list[tuple[int, dict[str, Any]]]:
        sql = "SELECT version, meta FROM recloop_models WHERE loop = %s ORDER BY version"
        return [(int(v), json.loads(bytes(m))) for v, m in self._rows(sql)]

    def stream_event_ids(self) -> list[str] | None:
        return None if self.stream_log is None else self.stream_log()


def nats_event_ids(url: str, stream: str) -> Callable[[], list[str]]:
    """A reader of every event id in a JetStream stream (as the runner reads it)."""

    def read() -> list[str]:
        from recloop.bus.nats_log import NatsBehaviourLog

        log = NatsBehaviourLog(url, stream=stream, subject="recloop.events." + stream.lower())
        try:
            out: list[str] = []
            while True:
                batch = log.read(len(out), 5000)
                if not batch:
                    return out
                out.extend(e.event_id for _, e in batch)
        finally:
            log.close()

    return read


@dataclass
class Audit:
    acknowledged: int = 0
    found: int = 0
    missing: int = 0
    duplicated: int = 0
    phantom: int = 0
    """Logged although refused (or never sent)."""
    unknown: int = 0
    """Given up on by the client: allowed either way, counted for the table."""
    joined_ok: bool = False
    learned_ok: bool = False
    stream_ok: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.missing == 0
            and self.duplicated == 0
            and self.phantom == 0
            and self.joined_ok
            and self.learned_ok
            and self.stream_ok is not False
        )


def settled(backend: Backend, stream_done: Callable[[], bool] | None = None) -> bool:
    """Everything logged is joined and learned (and the stream has caught up)."""
    decisions = {e for k, e, _ in backend.log_rows() if k == "decision"}
    joined = backend.joined_rows()
    metas = backend.model_metas()
    if len(joined) != len(decisions) or not metas:
        return False
    if metas[-1][1].get("learner_offset") != len(joined):
        return False
    return stream_done is None or stream_done()


def wait_settled(
    backend: Backend, timeout: float, stream_done: Callable[[], bool] | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if settled(backend, stream_done):
                return True
        except Exception:  # a store still coming back: keep waiting
            pass
        time.sleep(0.25)
    return False


def _count(kind: str, logged: Counter[str], sent: Sent, audit: Audit) -> None:
    acked, unknown, rejected = sent.acked[kind], sent.unknown[kind], sent.rejected[kind]
    audit.acknowledged += len(acked)
    audit.unknown += len(unknown)
    audit.found += len(acked & set(logged))
    missing = acked - set(logged)
    audit.missing += len(missing)
    dups = {k: n for k, n in logged.items() if n > 1}
    audit.duplicated += sum(n - 1 for n in dups.values())
    phantom = set(logged) - acked - unknown
    audit.phantom += len(phantom)
    if missing:
        audit.problems.append(
            f"{kind}: {len(missing)} acknowledged missing, e.g. {sorted(missing)[:3]}"
        )
    if dups:
        audit.problems.append(f"{kind}: logged more than once: {sorted(dups.items())[:3]}")
    if phantom:
        why = "refused" if phantom & rejected else "never sent"
        audit.problems.append(
            f"{kind}: {len(phantom)} logged although {why}, e.g. {sorted(phantom)[:3]}"
        )


def audit(
    backend: Backend,
    sent: Sent,
    stream_done: Callable[[], bool] | None = None,
    scope: Callable[[str], bool] | None = None,
) -> Audit:
    """Count one run. ``scope`` limits what is counted to some keys (a decision's event
    id, a reward's ``r:ID:RID``, a behaviour event's id): for a fault that deletes data on
    purpose, the records sent after it."""
    out = Audit()
    rows = backend.log_rows()
    if scope is not None:
        sent = _only(sent, scope)
    decisions = Counter(e for k, e, _ in rows if k == "decision")
    rewards = Counter(d or "" for k, _, d in rows if k == "reward")
    if scope is not None:
        decisions = Counter({k: n for k, n in decisions.items() if scope(k)})
        rewards = Counter({k: n for k, n in rewards.items() if scope(k)})
    _count("decision", decisions, sent, out)
    _count("reward", rewards, sent, out)
    events = backend.stream_event_ids()
    if events is not None and (sent.acked["event"] or sent.unknown["event"]):
        _count("event", Counter(e for e in events if scope is None or scope(e)), sent, out)
    elif sent.acked["event"]:
        out.problems.append("behaviour events acknowledged but no stream log to read")
        out.missing += len(sent.acked["event"])

    # joined once, with its logged rewards; nothing logged dead-lettered
    joined = backend.joined_rows()
    all_decisions = Counter(e for k, e, _ in rows if k == "decision")
    per_event = Counter(e for k, e, _ in rows if k == "reward")
    times = Counter(e for _, e, _, _ in joined)
    bad = [(e, n, per_event[e]) for _, e, _, n in joined if n != per_event[e] or times[e] != 1]
    seqs = [s for s, _, _, _ in joined]
    out.joined_ok = not bad and set(times) == set(all_decisions) and seqs == sorted(set(seqs))
    if not out.joined_ok:
        lost = set(all_decisions) - set(times)
        out.problems.append(
            f"joined: {len(lost)} logged not joined (e.g. {sorted(lost)[:3]}), "
            f"wrong or twice: {bad[:3]}"
        )
    dropped = backend.dropped()
    if dropped:
        out.joined_ok = False
        out.problems.append(f"the joiner dead-lettered logged records: {dropped[:3]}")

    metas = backend.model_metas()
    skipped = [
        (v, m.get("examples_learned"), m.get("learner_offset"))
        for v, m in metas
        if m.get("examples_learned") != m.get("learner_offset")
    ]
    newest = metas[-1][1].get("learner_offset") if metas else None
    # (offsets may go back: a learner that finds its newest version unusable resumes from
    # an older one and learns the rest again, each version still learning each seq once)
    out.learned_ok = not skipped and newest == len(joined)
    if not out.learned_ok:
        out.problems.append(
            f"learned: (version, examples_learned, learner_offset) that skipped or re-learned "
            f"{skipped[:3]}; newest learned to {newest}, joined {len(joined)}"
        )
    if stream_done is not None:
        try:
            out.stream_ok = stream_done()
        except Exception as exc:  # the status did not answer: not caught up, and why
            out.stream_ok = False
            out.problems.append(f"stream status unreadable: {type(exc).__name__}: {exc}")
        if not out.stream_ok:
            out.problems.append("the stream did not process its whole log")
    return out


def _only(sent: Sent, scope: Callable[[str], bool]) -> Sent:
    out = Sent()
    pairs = ((out.acked, sent.acked), (out.unknown, sent.unknown), (out.rejected, sent.rejected))
    for mine, theirs in pairs:
        for kind, keys in theirs.items():
            mine[kind] = {k for k in keys if scope(k)}
    return out
