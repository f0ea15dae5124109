"""Every store implementation through one suite (SQLite today; PostgreSQL plugs in here)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recloop.core.errors import DuplicateEventError, UnknownModelError
from recloop.core.protocols import EventLog, JoinedStore, ModelStore
from recloop.core.types import (
    Action,
    Activation,
    DeadLetter,
    Decision,
    JoinedExample,
    LoggedDecision,
    Reward,
)
from recloop.log.codec import decode_decision
from recloop.stores.sqlite_joined import SqliteJoinedStore
from recloop.stores.sqlite_log import SqliteEventLog
from recloop.stores.sqlite_models import SqliteModelStore

POSTGRES_URL = os.environ.get("RECLOOP_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def _postgres_reachable() -> str | None:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:  # any failure to reach it is a reason to skip, given clearly
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}"
    return None


def _pg(factory: str) -> Callable[..., Any]:
    def make(path: Path, *args: Any) -> Any:
        reason = _postgres_reachable()
        if reason:
            pytest.skip(reason)
        from recloop.stores import postgres

        loop = f"test-{uuid.uuid4().hex}"  # a fresh loop: the tables are shared
        return getattr(postgres, factory)(POSTGRES_URL, loop, *args)

    return make


LOGS: dict[str, Callable[[Path], EventLog]] = {
    "sqlite": lambda p: SqliteEventLog(p / "l.db"),
    "postgres": _pg("PostgresEventLog"),
}
JOINED: dict[str, Callable[[Path], JoinedStore]] = {
    "sqlite": lambda p: SqliteJoinedStore(p / "l.db"),
    "postgres": _pg("PostgresJoinedStore"),
}
MODELS: dict[str, Callable[[Path, int], ModelStore]] = {
    "sqlite": lambda p, keep: SqliteModelStore(p / "m.db", keep=keep),
    "postgres": _pg("PostgresModelStore"),
}


def decision(event_id: str, ts: float = 1.0, deferred: bool = False) -> Decision:
    return Decision(
        event_id=event_id,
        loop="t",
        timestamp=ts,
        context={"u": {"age": "adult"}, "x": 1.5},
        actions=(Action("a", {"f": 1}), Action("b")),
        ranking=("b", "a"),
        probabilities=(0.9, 0.1),
        chosen="b",
        chosen_index=1,
        probability=0.9,
        model_version="3",
        policy="vw-cb",
        deferred=deferred,
    )


@pytest.fixture(params=sorted(LOGS))
def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    store = LOGS[request.param](tmp_path)
    yield store
    store.close()


@pytest.fixture(params=sorted(JOINED))
def joined(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JoinedStore]:
    store = JOINED[request.param](tmp_path)
    yield store
    store.close()


@pytest.fixture(params=sorted(MODELS))
def models(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelStore]:
    store = MODELS[request.param](tmp_path, 3)
    yield store
    store.close()


def test_log_round_trip_in_offset_order(event_log: EventLog) -> None:
    d = decision("e1", deferred=True)
    o1 = event_log.append_decision(d)
    o2 = event_log.append_reward(Reward("e1", 2.5, 3.0, "r1"))
    o3 = event_log.append_activation(Activation("e1", 2.0))
    assert o1 < o2 < o3 and event_log.end_offset() == o3
    records = event_log.read(0, 10)
    assert [(r.offset, r.kind) for r in records] == [
        (o1, "decision"),
        (o2, "reward"),
        (o3, "activation"),
    ]
    logged = records[0].event
    assert isinstance(logged, LoggedDecision)
    assert (logged.event_id, logged.timestamp, logged.deferred) == ("e1", 1.0, True)
    assert decode_decision(logged.body) == d
    assert records[1].event == Reward("e1", 2.5, 3.0, "r1")
    assert event_log.read(o1, 10)[0].offset == o2
    assert event_log.decision_time("e1") == (1.0, True, 2.0)
    assert event_log.decision_time("nope") is None
    assert event_log.get_decision("e1") == d
    assert event_log.count("decision") == 1 and event_log.count("reward") == 1


def test_log_rejects_duplicates(event_log: EventLog) -> None:
    event_log.append_decision(decision("e1"))
    with pytest.raises(DuplicateEventError):
        event_log.append_decision(decision("e1"))
    event_log.append_reward(Reward("e1", 1.0, 2.0, "r"))
    event_log.append_reward(Reward("e1", 1.0, 2.0))  # no id: several rewards are fine
    event_log.append_reward(Reward("e1", 1.0, 2.0))
    with pytest.raises(DuplicateEventError):
        event_log.append_reward(Reward("e1", 1.0, 2.0, "r"))
    assert event_log.count("decision") == 1 and event_log.count("reward") == 3


def test_dead_letters_are_idempotent_per_source_offset(event_log: EventLog) -> None:
    event_log.dead_letter(DeadLetter("unknown-event", "x", 1.0, {"value": 1}, 7))
    event_log.dead_letter(DeadLetter("unknown-event", "x", 1.0, {"value": 1}, 7))
    event_log.dead_letter(DeadLetter("expired-event", "y", 2.0, {}, None))
    event_log.dead_letter(DeadLetter("expired-event", "y", 2.0, {}, None))
    letters = event_log.dead_letters()
    assert event_log.count("dead_letter") == 3
    assert letters[-1] == DeadLetter("unknown-event", "x", 1.0, {"value": 1}, 7)


def test_joined_commit_is_idempotent_and_carries_offsets(joined: JoinedStore) -> None:
    ex = JoinedExample(decision("e1"), 1.0, 1, False, 5.0)
    joined.commit_joined([ex], {"joiner.read": 4}, [])
    joined.commit_joined(
        [ex, JoinedExample(decision("e2"), 0.0, 0, True, 6.0)], {"joiner.read": 9}, []
    )
    got = joined.read(0, 10)
    assert [(e.seq, e.decision.event_id, e.reward, e.used_default) for e in got] == [
        (1, "e1", 1.0, False),
        (2, "e2", 0.0, True),
    ]
    assert got[0].decision == ex.decision
    assert joined.offset("joiner.read") == 9 and joined.offset("other") == 0
    assert joined.is_joined("e2") and not joined.is_joined("e3")
    assert joined.count() == 2 and joined.end_seq() == 2
    assert [e.seq for e in joined.iter_all(batch=1)] == [1, 2]


def test_deleting_joined_examples_keeps_the_newest_and_the_bounds(joined: JoinedStore) -> None:
    examples = [JoinedExample(decision(f"d{i}"), 1.0, 1, False, 10.0 + i) for i in range(5)]
    joined.commit_joined(examples, {"joiner.read": 5}, [])
    assert joined.delete_joined(through_seq=3, joined_before=12.5) == 3  # seq 1-3 (t 10-12)
    assert [e.seq for e in joined.read(0, 10)] == [4, 5]
    assert joined.delete_joined(through_seq=99, joined_before=99.0) == 1  # not the newest
    assert [e.seq for e in joined.read(0, 10)] == [5] and joined.end_seq() == 5
    joined.commit_joined([JoinedExample(decision("d9"), 0.0, 0, True, 20.0)], {}, [])
    assert joined.end_seq() == 6  # numbering goes on


def test_joined_state(joined: JoinedStore) -> None:
    joined.set_state("candidate:a", "1")
    joined.set_state("candidate:a", "2")
    joined.set_state("other", "3")
    assert joined.get_state("candidate:a") == "2"
    assert joined.states("candidate:") == {"candidate:a": "2"}
    joined.delete_state("candidate:a")
    assert joined.get_state("candidate:a") is None


def test_model_store_versions_pin_and_prune(models: ModelStore) -> None:
    assert models.latest() is None
    v1 = models.put(b"one", {"learner_offset": 1})
    v2 = models.put(b"two", {"learner_offset": 2})
    assert (v1.version, v2.version) == ("1", "2")
    assert models.get("1") == (v1, b"one")
    assert models.latest() == v2 == models.newest()
    models.activate("1")
    assert models.latest() == v1 and models.pinned() == "1"
    for i in range(3, 7):
        models.put(f"v{i}".encode(), {})
    # keep=3: versions 4, 5, 6 remain, and the pinned version 1 survives pruning
    assert [v.version for v in models.versions()] == ["6", "5", "4", "1"]
    with pytest.raises(UnknownModelError):
        models.get("2")
    with pytest.raises(UnknownModelError):
        models.activate("nope")
    # numbers the version column cannot hold, and digits int() refuses: unknown, not a crash
    for beyond in ("9" * 30, str(2**63), "\u00b2", "\u0661"):
        with pytest.raises(UnknownModelError):
            models.get(beyond)
        with pytest.raises(UnknownModelError):
            models.activate(beyond)
    models.follow_newest()
    assert models.latest() is not None and models.latest().version == "6"  # type: ignore[union-attr]


@pytest.mark.services
def test_a_loop_learns_on_postgres(tmp_path: Path) -> None:
    """The whole loop on PostgreSQL: rank, reward, join, learn, serve, evaluate, lease."""
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    from recloop import Loop
    from recloop.core.clock import FakeClock
    from recloop.learning.lease import LeaseBusyError
    from recloop.settings import LoopSettings

    clock = FakeClock()
    name = f"loop-{uuid.uuid4().hex[:12]}"
    settings = {"exp_unit_seconds": 1.0, "storage_url": POSTGRES_URL}
    with Loop.open(tmp_path, name=name, start=False, clock=clock, **settings) as lp:
        lp.register_policy("always-b", "fixed", {"action_id": "b"})
        for i in range(30):
            d = lp.rank({"u": i % 2}, ["a", "b", "c"], event_id=f"e{i}")
            lp.reward(d.event_id, 1.0 if d.chosen == "b" else 0.0)
        with pytest.raises(LeaseBusyError):
            Loop(LoopSettings(lease_wait_seconds=0.1, **settings), tmp_path, name, clock)
        clock.advance(2)
        assert lp.step() == 30
        assert lp.model_version == "1"
        assert lp.models.newest() is not None
        report = lp.evaluations()
        assert report["examples"] == 30 and report["candidates"][0]["n"] == 30
        for file in ("loop.db", "joined.db"):
            assert not (tmp_path / name / file).exists()  # nothing went to SQLite
    with Loop.open(tmp_path, name=name, start=False, clock=clock, **settings) as again:
        assert again.pipeline is not None and again.pipeline.learner_offset == 30
        assert again.log.count("decision") == 30


def test_exclusive_commits_on_typed_errors_and_rolls_back_on_others(
    event_log: EventLog,
) -> None:
    from recloop.core.errors import UnknownEventError

    with pytest.raises(UnknownEventError), event_log.exclusive():
        event_log.dead_letter(DeadLetter("unknown-event", "x", 1.0, {}, None))
        raise UnknownEventError("x")  # the caller's typed error: the dead letter stays
    with pytest.raises(RuntimeError), event_log.exclusive():
        event_log.append_decision(decision("lost"))
        raise RuntimeError("boom")  # anything else: nothing written survives
    with event_log.exclusive(), event_log.exclusive():  # reentrant
        event_log.append_decision(decision("kept"))
    assert event_log.count("dead_letter") == 1
    assert event_log.get_decision("lost") is None
    assert event_log.get_decision("kept") is not None
    assert [r.event.event_id for r in event_log.read(0, 10)] == ["kept"]
