"""The embedded runner: log -> processor -> recommendations, snapshots and restarts."""

from __future__ import annotations

import random

from recloop.stores.sqlite_stream import (
    SqliteBehaviourLog,
    SqliteRecommendationStore,
    SqliteStreamState,
)
from recloop.streaming.embedded import EmbeddedRunner
from recloop.streaming.events import BehaviourEvent
from recloop.streaming.processor import StreamProcessor, TriggerConfig
from recloop.streaming.state import UserStateConfig


def synthetic_events(n, users=50, items=30, seed=0, disorder=20.0):
    rng = random.Random(seed)
    out = []
    t = 1_000_000.0
    for i in range(n):
        t += rng.expovariate(5.0)
        ts = t - rng.uniform(0, disorder)  # some arrive out of order
        user = f"u{rng.randrange(users)}"
        item = f"i{int(rng.paretovariate(1.2)) % items}"
        kind = rng.choice(["view", "view", "click", "cart", "buy"])
        out.append(BehaviourEvent(user, item, kind, ts, f"e{i}"))
    return out


def open_runner(path, **kw):
    proc = StreamProcessor(UserStateConfig(last_n=5), TriggerConfig(k=5, candidates=20))
    return EmbeddedRunner(
        proc,
        SqliteBehaviourLog(path / "events.db"),
        SqliteStreamState(path / "state.db"),
        SqliteRecommendationStore(path / "recs.db"),
        **kw,
    )


def final_view(runner):
    users = {u: s.state.to_dict() for u, s in runner.processor.users.items()}
    recs = {u: runner.recs.get(u)[0] for u in runner.processor.users if runner.recs.get(u)}
    return users, recs


def test_runner_turns_logged_events_into_recommendations(tmp_path):
    runner = open_runner(tmp_path, batch=100)
    events = synthetic_events(2000)
    offsets = runner.log.append(events)
    assert offsets == list(range(1, 2001))
    assert runner.log.append(events[:3]) == [None, None, None]  # duplicates: not twice
    runner.run_until_idle()
    c = runner.counters
    assert c.events == 2000 and c.state_updates + c.late == 2000
    assert c.triggers == c.state_updates  # min_events=1: every change recommends
    users, recs = final_view(runner)
    assert set(recs) == set(users)
    for user, r in recs.items():
        assert r.state_version == users[user]["version"]
        assert not set(r.items) & {item for item, _, _ in users[user]["last_items"]}
    popular, _ = runner.recs.get_popular()
    assert popular.source == "popular" and len(popular.items) == 5


def test_restart_from_snapshot_gives_the_same_state_as_an_uninterrupted_run(tmp_path):
    events = synthetic_events(3000, seed=1)
    whole = open_runner(tmp_path / "whole")
    whole.log.append(events)
    whole.run_until_idle()

    crashed = open_runner(tmp_path / "crash", batch=250, snapshot_every_events=700,
                          snapshot_every_seconds=1e9)  # fmt: skip
    crashed.log.append(events)
    for _ in range(7):  # 1750 events processed, last snapshot at 1500 (no final snapshot)
        crashed.step()
    assert crashed.offset > 0
    del crashed  # a crash: nothing after the last snapshot is kept in memory
    resumed = open_runner(tmp_path / "crash")
    assert resumed.offset == 1500
    resumed.run_until_idle()
    assert final_view(resumed) == final_view(whole)


def test_a_short_list_is_topped_up_from_popular_items_minus_consumed(tmp_path):
    """ann's list was made when only her own item existed (empty); served later, it is
    topped up from the popular list, without what she consumed."""
    from recloop.settings import StreamSettings
    from recloop.streaming.service import Stream

    with Stream(StreamSettings(), tmp_path, run=False) as s:
        s.ingest(
            [
                {"user_id": "ann", "item_id": "shoes", "behaviour": "view", "timestamp": 1.0},
                {"user_id": "bob", "item_id": "socks", "behaviour": "buy", "timestamp": 2.0},
                {"user_id": "bob", "item_id": "shoes", "behaviour": "buy", "timestamp": 3.0},
            ]
        )
        assert s.start_runner(background=False) and s.runner is not None
        s.runner.run_until_idle()
        stored, _ = s.recs.get("ann")
        assert stored.items == () and stored.excluded == ("shoes",)
        body = s.recommendations("ann", k=3)
        assert body["source"] == "state" and [i["id"] for i in body["items"]] == ["socks"]


def test_idle_users_expire_and_their_state_is_deleted(tmp_path):
    from recloop.streaming.state import UserStateConfig as Cfg

    clock = [0.0]
    proc = StreamProcessor(Cfg(ttl_seconds=100.0))
    runner = EmbeddedRunner(
        proc,
        SqliteBehaviourLog(tmp_path / "events.db"),
        SqliteStreamState(tmp_path / "state.db"),
        SqliteRecommendationStore(tmp_path / "recs.db"),
        expire_every_seconds=10.0,
        clock=lambda: clock[0],
    )
    runner.log.append([BehaviourEvent("old", "i", "view", 1000.0, "e1")])
    runner.run_until_idle()
    runner.log.append([BehaviourEvent("new", "i", "view", 1200.0, "e2")])
    clock[0] = 11.0  # the runner's own cadence: expiry is due
    runner.step()
    assert set(runner.processor.users) == {"new"} and runner.counters.expired_users == 1
    runner.snapshot()
    _, users, _ = SqliteStreamState(tmp_path / "state.db").load()
    assert set(users) == {"new"}  # deleted from the snapshot too


def test_the_stream_can_rank_with_the_model_a_decision_loop_serves(tmp_path):
    """stream.policy = loop:default: the bandit that learned from rewards that 'b' pays
    ranks the stream's candidates, against their popularity order."""
    from recloop import Action, Loop
    from recloop.core.clock import FakeClock
    from recloop.settings import StreamSettings
    from recloop.streaming.service import Stream

    clock = FakeClock()
    actions = [Action("a"), Action("b"), Action("c")]
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0,
                   checkpoint_every_examples=50, epsilon=0.5, seed=1) as loop:  # fmt: skip
        for i in range(600):
            d = loop.rank({"sessions": 1}, actions, event_id=f"d{i}")
            if d.chosen == "b":
                loop.reward(d.event_id, 1.0)
            clock.advance(0.01)
            if i % 100 == 99:
                clock.advance(2.0)
                loop.step()
        clock.advance(2.0)
        loop.step()
        assert loop.model_version not in ("default", "0")

    settings = StreamSettings(policy="loop:default", k=3)
    with Stream(settings, tmp_path, run=False) as s:
        pop = [("a", "buy"), ("a", "buy"), ("c", "cart"), ("b", "view")]  # a > c > b
        s.ingest([{"user_id": f"o{j}", "item_id": item, "behaviour": kind, "timestamp": 10.0}
                  for j, (item, kind) in enumerate(pop)])  # fmt: skip
        s.ingest([{"user_id": "u", "item_id": "z", "behaviour": "view", "timestamp": 11.0}])
        assert s.start_runner(background=False) and s.runner is not None
        s.runner.run_until_idle()
        body = s.recommendations("u", k=3)
        assert body["items"][0]["id"] == "b", body
        assert s.recs.get("u")[0].policy == "loop:default"
