"""Forgetting a user in a decision loop, on every log backend (SQLite, real PostgreSQL),
checked in the backend's own tables; and raw-log retention by age on the fake clock."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.privacy.loops import delete_raw_logs, forget_in_loop
from recloop.privacy.matching import UserMatcher
from recloop.settings import LoopSettings

POSTGRES_URL = os.environ.get("RECLOOP_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
ACTIONS = ["a", "b", "c"]


def _postgres_reason() -> str | None:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:  # any failure to reach it is a reason to skip, given clearly
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}"
    return None


class Backend:
    """Direct queries on a loop's tables: what is really stored, not what the API says."""

    def __init__(self, kind: str, loop_dir: Path) -> None:
        self.kind, self.dir, self.name = kind, loop_dir, loop_dir.name

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """(event_id, kind) of the log, (event_id,) of joined and dead letters."""
        cols = "event_id, kind" if table == "events" else "event_id"
        if self.kind == "sqlite":
            file = "joined.db" if table == "joined" else "loop.db"
            conn = sqlite3.connect(self.dir / file)
            try:
                return conn.execute(f"SELECT {cols} FROM {table}").fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            return conn.execute(
                f"SELECT {cols} FROM recloop_{table} WHERE loop = %s", (self.name,)
            ).fetchall()

    def forgotten(self) -> int:
        """Digests of forgotten events the joined store still lists."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.dir / "joined.db")
            try:
                return int(conn.execute("SELECT COUNT(*) FROM forgotten").fetchone()[0])
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM recloop_forgotten WHERE loop = %s", (self.name,)
            ).fetchone()
            return int(row[0]) if row else 0

    def bodies_naming(self, needle: str) -> int:
        """Rows whose stored bytes contain ``needle`` anywhere (log, joined, letters)."""
        n = 0
        if self.kind == "sqlite":
            for file, sql in (("loop.db", "SELECT body FROM events"),
                              ("loop.db", "SELECT body FROM dead_letters"),
                              ("joined.db", "SELECT decision FROM joined")):  # fmt: skip
                conn = sqlite3.connect(self.dir / file)
                n += sum(needle.encode() in bytes(b) for (b,) in conn.execute(sql))
                conn.close()
            return n
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            for sql in ("SELECT body FROM recloop_events WHERE loop = %s",
                        "SELECT body FROM recloop_dead_letters WHERE loop = %s",
                        "SELECT decision FROM recloop_joined WHERE loop = %s"):  # fmt: skip
                n += sum(needle.encode() in bytes(b) for (b,) in conn.execute(sql, (self.name,)))
        return n


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path) -> Iterator[tuple[Loop, FakeClock, Backend, LoopSettings]]:
    extra: dict[str, Any] = {}
    if request.param == "postgres":
        reason = _postgres_reason()
        if reason:
            pytest.skip(reason)
        extra["storage_url"] = POSTGRES_URL
    clock = FakeClock()
    name = f"forget-{uuid.uuid4().hex[:12]}"  # a fresh loop: PostgreSQL's tables are shared
    settings = LoopSettings(exp_unit_seconds=5.0, checkpoint_every_examples=1, **extra)
    loop = Loop(settings, tmp_path, name, clock)
    yield loop, clock, Backend(request.param, tmp_path / name), settings
    loop.close()


def _decide(loop: Loop, user: Any, n: int, prefix: str, nested: bool = False) -> list[str]:
    ids = []
    for i in range(n):
        context = {"user": {"id": user}} if nested else {"user_id": user, "hour": i % 24}
        d = loop.rank(context, ACTIONS, event_id=f"{prefix}-{i}")
        loop.reward(d.event_id, 1.0 if i % 2 else 0.0)
        ids.append(d.event_id)
    return ids


def _ids(rows: list[tuple[Any, ...]]) -> set[str]:
    return {str(r[0]) for r in rows}


def test_forgets_one_user_everywhere_and_nothing_else(world):
    loop, clock, db, settings = world
    _decide(loop, "u1", 6, "u1")
    _decide(loop, "u1", 2, "u1n", nested=True)  # at "user.id"
    _decide(loop, 42, 2, "int42")  # an integer id: another user (not "u1")
    _decide(loop, "u2", 5, "u2")
    _decide(loop, "u10", 3, "u10")  # "u1" is a prefix of it, not its id
    loop.reward("u1-0", 0.5)  # a second reward
    clock.advance(6.0)
    loop.step()  # joined: all but the newest still pending? (no: all windows closed)
    _decide(loop, "u1", 2, "u1late")  # pending in the joiner's memory at forgetting time
    before = {t: _ids(db.rows(t)) for t in ("events", "joined")}
    assert {"u1-0", "u1n-1", "u2-0"} <= before["joined"]

    report = forget_in_loop(settings, loop.dir, "u1", clock.now())

    assert report["backend"] == db.kind
    assert report["decisions"] == 10 and report["rewards"] == 11 and report["joined"] == 8
    events, joined = _ids(db.rows("events")), _ids(db.rows("joined"))
    forgotten = {e for e in before["events"] if e.startswith(("u1-", "u1n-", "u1late-"))}
    assert not forgotten & (events | joined)
    assert db.bodies_naming('"u1"') == 0
    assert before["events"] - forgotten - {""} == events - {""}  # every other user's rows
    assert before["joined"] - forgotten == joined
    assert {"int42-0", "u2-0", "u10-0"} <= joined  # 42 and u10 are other users

    again = forget_in_loop(settings, loop.dir, "u1", clock.now())
    assert again == {"backend": db.kind, "decisions": 0, "rewards": 0, "activations": 0,
                     "dead_letters": 0, "joined": 0}  # fmt: skip

    # the pipeline goes on: the pending forgotten decisions are never joined, the others are,
    # and the learner's offset keeps matching the joined stream
    _decide(loop, "u2", 4, "u2after")
    clock.advance(6.0)
    loop.step()
    joined = _ids(db.rows("joined"))
    assert not {e for e in joined if e.startswith(("u1-", "u1n-", "u1late-"))}
    assert {f"u2after-{i}" for i in range(4)} <= joined
    pipeline = loop.pipeline
    assert pipeline is not None
    assert pipeline.learner_offset == loop.joined.end_seq()
    assert db.bodies_naming('"u1"') == 0


def test_integer_ids_and_list_contexts_match():
    m = UserMatcher("42", ["user_id", "user.id"])
    assert m.matches({"user_id": 42}) and m.matches({"user": {"id": "42"}})
    assert m.matches([{"x": 1}, {"user": {"id": 42}}])
    assert not m.matches({"user_id": 42.5}) and not m.matches({"user_id": True})
    assert not m.matches({"user_id": "420"}) and not m.matches({"other": "42"})
    assert m.needle() == b"42"


def test_the_newest_record_leaves_a_tombstone_and_its_offset_is_not_reused(world):
    loop, clock, db, settings = world
    _decide(loop, "u2", 2, "u2")
    last = loop.rank({"user_id": "u1"}, ACTIONS, event_id="u1-last")  # the newest record
    end = loop.log.end_offset()
    assert forget_in_loop(settings, loop.dir, "u1", clock.now())["decisions"] == 1
    assert loop.log.end_offset() == end  # the offset stays taken
    assert last.event_id not in _ids(db.rows("events"))
    assert ("", "forgotten") in {tuple(r) for r in db.rows("events")}
    later = loop.rank({"user_id": "u3"}, ACTIONS, event_id="u3-0")
    assert loop.log.end_offset() == end + 1
    clock.advance(6.0)
    loop.step()
    assert {"u2-0", "u2-1", later.event_id} == _ids(db.rows("joined"))
    forget_in_loop(settings, loop.dir, "nobody", clock.now())  # a later pass clears it
    assert ("", "forgotten") not in {tuple(r) for r in db.rows("events")}


def test_a_joiner_holding_the_decision_never_commits_it(world):
    loop, clock, db, settings = world
    _decide(loop, "u1", 3, "u1")
    _decide(loop, "u2", 3, "u2")
    loop.step()  # read into the joiner's memory, windows still open
    pipeline = loop.pipeline
    assert pipeline is not None and pipeline.joiner.is_pending("u1-0")
    forget_in_loop(settings, loop.dir, "u1", clock.now())
    assert pipeline.joiner.is_pending("u1-0")  # the joiner (another process) still holds it
    assert db.forgotten() == 3
    clock.advance(6.0)
    loop.step()
    assert _ids(db.rows("joined")) == {"u2-0", "u2-1", "u2-2"}
    assert db.bodies_naming('"u1"') == 0
    assert db.forgotten() == 0  # the joiner's replay point has passed them: none can come back


def test_raw_log_retention_deletes_only_what_the_joiner_is_done_with(world, tmp_path):
    loop, clock, db, settings = world
    _decide(loop, "u1", 3, "old")
    clock.advance(2 * 86400.0)
    kept = dict(settings.model_dump(), raw_log_retention_days=1.0)
    retained = LoopSettings(**kept)
    # not joined yet (the joiner has not read them): nothing may go, however old
    assert delete_raw_logs(retained, loop.dir, clock.now()) == 0
    assert len(db.rows("events")) == 6
    loop.step()  # joined now
    young = _decide(loop, "u2", 2, "young")
    assert delete_raw_logs(retained, loop.dir, clock.now()) == 6
    assert _ids(db.rows("events")) == set(young)
    assert {"old-0", "old-1", "old-2"} <= _ids(db.rows("joined"))  # examples stay
    assert delete_raw_logs(LoopSettings(**settings.model_dump()), loop.dir, clock.now()) == 0
    clock.advance(6.0)
    loop.step()
    assert set(young) <= _ids(db.rows("joined"))


def test_the_pipeline_applies_raw_log_retention(tmp_path):
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=5.0,
                   raw_log_retention_days=1.0) as loop:  # fmt: skip
        _decide(loop, "u1", 4, "e")
        clock.advance(6.0)
        loop.step()  # joined; not old enough yet
        assert loop.log.count("decision") == 4
        clock.advance(2 * 86400.0)
        loop.step()
        assert (
            loop.log.count("decision") == 0 and loop.log.count("reward") == 0
        )  # newest: a tombstone
        assert loop.joined.count() == 4
        assert loop.stats.get("raw_log_deleted_total") == 8
        # the raw log is gone, the joined examples still name the user: found there
        out = loop.forget_user("u1")
        assert out["decisions"] == 0 and out["rewards"] == 0 and out["joined"] == 4
        assert loop.joined.count() == 0


def test_forgetting_the_newest_joined_example_keeps_its_seq_taken(world):
    loop, clock, db, settings = world
    _decide(loop, "u2", 2, "u2")
    clock.advance(1.0)
    _decide(loop, "u1", 1, "u1")  # joined last: the newest example
    clock.advance(6.0)
    loop.step()
    end = loop.joined.end_seq()
    assert [e.decision.event_id for e in loop.joined.read(end - 1, 1)] == ["u1-0"]
    assert forget_in_loop(settings, loop.dir, "u1", clock.now())["joined"] == 1
    assert loop.joined.end_seq() == end  # not handed out again
    assert _ids(db.rows("joined")) == {"u2-0", "u2-1"}
    _decide(loop, "u3", 1, "u3")
    clock.advance(6.0)
    loop.step()
    new = loop.joined.read(end, 10)
    assert [(e.decision.event_id, e.seq) for e in new] == [("u3-0", end + 1)]
    pipeline = loop.pipeline
    assert pipeline is not None and pipeline.learner_offset == end + 1
    assert pipeline.learner is not None and pipeline.learner.examples_learned == 4


@pytest.mark.parametrize(
    "fields", [["user..id"], [""], ["ü"], ["x" * 129], ["a"] * 17, ["user\nid"], [".id"]]
)
def test_user_fields_are_checked(fields):
    from recloop.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="user_fields"):
        Loop.open(Path("/nonexistent"), start=False, user_fields=fields)


def test_the_stores_name_the_joiners_replay_point_as_the_pipeline_does():
    from recloop.learning import pipeline
    from recloop.stores import forget_common

    assert forget_common.REPLAY_KEY == pipeline.REPLAY_KEY
