"""Popularity with time decay, and the processor: trigger -> policy -> recommendation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from recloop.streaming.events import BehaviourEvent
from recloop.streaming.popularity import DecayedPopularity
from recloop.streaming.processor import StreamProcessor, TriggerConfig
from recloop.streaming.state import UserStateConfig


def ev(user, item, t, behaviour="view", i=None):
    return BehaviourEvent(user, item, behaviour, float(t), i or f"{user}-{item}-{t}")


def test_popularity_decays_by_half_life():
    pop = DecayedPopularity(half_life_seconds=100.0, weights={"view": 1.0, "buy": 4.0})
    pop.add("a", "view", 0.0)
    pop.add("a", "buy", 100.0)
    pop.add("b", "view", 200.0)
    assert pop.score("a", 200.0) == pytest.approx(1.0 * 0.25 + 4.0 * 0.5)
    assert pop.score("b", 300.0) == pytest.approx(0.5)
    assert [i for i, _ in pop.top(2, 200.0)] == ["a", "b"]
    assert pop.top(5, 200.0, exclude={"a"}) == [("b", pytest.approx(1.0))]


def test_popularity_is_order_independent_and_survives_rebasing():
    rng = random.Random(3)
    events = [(f"i{rng.randrange(20)}", rng.choice(["view", "buy"]), rng.uniform(0, 1e6))
              for _ in range(2000)]  # fmt: skip
    a, b = DecayedPopularity(half_life_seconds=600.0), DecayedPopularity(half_life_seconds=600.0)
    for e in sorted(events, key=lambda e: e[2]):  # time order: rebases many times
        a.add(*e)
    for e in events:  # arbitrary order
        b.add(*e)
    now = 1e6
    for item in {e[0] for e in events}:
        assert a.score(item, now) == pytest.approx(b.score(item, now), rel=1e-9, abs=1e-300)
    assert [i for i, _ in a.top(5, now)] == [i for i, _ in b.top(5, now)]


def test_ties_rank_by_item_id():
    pop = DecayedPopularity()
    for item in ("c", "a", "b"):
        pop.add(item, "view", 0.0)
    assert [i for i, _ in pop.top(3, 0.0)] == ["a", "b", "c"]


def test_processor_triggers_after_min_events_and_excludes_consumed():
    proc = StreamProcessor(
        UserStateConfig(last_n=3), TriggerConfig(min_events=2, k=2, candidates=10)
    )
    for i, item in enumerate(["x", "x", "y", "z", "w"]):  # popularity: x > y = z = w
        proc.process(ev(f"other{i}", item, 10 + i))
    first = proc.process(ev("u", "x", 20))
    assert first.outcome == "applied" and first.recommendation is None  # 1 < min_events
    second = proc.process(ev("u", "y", 21))
    rec = second.recommendation
    assert rec is not None and rec.state_version == 2 and rec.source == "state"
    assert rec.items == ("w", "z")  # x and y consumed; ties w/z by id
    assert rec.event_time == 21.0 and rec.policy == "popularity"
    late = proc.process(ev("u", "q", 21.0 - 61.0))
    assert late.outcome == "late" and late.recommendation is None


def test_any_policy_ranks_the_candidates():
    class PrefersZ:
        name, version = "prefers-z", "1"

        def scores(self, context, actions):
            assert "recent_items" in context and "activeness" in context
            return np.array([1.0 if a.id == "z" else 0.0 for a in actions])

    proc = StreamProcessor(trigger=TriggerConfig(k=1), policy=PrefersZ())
    for i, item in enumerate(["x", "x", "z"]):
        proc.process(ev(f"o{i}", item, i))
    rec = proc.process(ev("u", "y", 5)).recommendation
    assert rec is not None and rec.items == ("z",) and rec.policy == "prefers-z"


def test_popular_fallback_and_ttl():
    proc = StreamProcessor(UserStateConfig(ttl_seconds=100.0))
    proc.process(ev("u", "a", 0))
    proc.process(ev("v", "b", 50))
    fallback = proc.popular(now=60.0, k=5)
    assert fallback.source == "popular" and set(fallback.items) == {"a", "b"}
    assert proc.expire(now=120.0) == ["u"]
    assert set(proc.users) == {"v"}


def test_the_sorted_head_always_equals_a_full_scan():
    """top() reads a small sorted head; it must equal ranking every item, through rebases."""
    rng = random.Random(11)
    fast = DecayedPopularity(half_life_seconds=50.0, keep_top=8)
    t = 0.0
    for _ in range(5000):
        t += rng.expovariate(1.0)
        fast.add(f"i{int(rng.paretovariate(1.1)) % 60}", rng.choice(["view", "buy"]), t)
        if rng.random() < 0.05:
            exclude = {f"i{rng.randrange(60)}" for _ in range(3)}
            want = sorted(((-v, k) for k, v in fast.scaled.items() if k not in exclude))[:5]
            got = fast.top(5, t, exclude=exclude)
            assert [k for k, _ in got] == [k for _, k in want]
    restored = DecayedPopularity.from_dict(fast.to_dict())
    assert restored.top(8, t) == fast.top(8, t)


def test_an_old_event_reads_popularity_as_of_the_newest_one():
    """A user whose event is a year older than the newest one: scores as of the newest
    event (no overflow, the same ranking)."""
    proc = StreamProcessor()
    proc.process(ev("ann", "shoes", 1.8e9))
    proc.process(ev("cat", "hats", 1.8e9))
    rec = proc.process(ev("bob", "socks", 1.8e9 - 365 * 86400)).recommendation
    assert rec is not None and rec.items == ("hats", "shoes")
    assert all(0 < s < 10 for s in rec.scores)


def test_a_poison_event_is_dead_lettered_and_the_stream_goes_on(tmp_path):
    from recloop.stores.sqlite_stream import (
        SqliteBehaviourLog,
        SqliteRecommendationStore,
        SqliteStreamState,
    )
    from recloop.streaming.embedded import EmbeddedRunner

    class Broken:
        name, version = "broken", "1"

        def scores(self, context, actions):
            if context["user_id"] == "poison":
                raise RuntimeError("boom")
            return np.zeros(len(actions))

    state = SqliteStreamState(tmp_path / "state.db")
    runner = EmbeddedRunner(
        StreamProcessor(policy=Broken()),
        SqliteBehaviourLog(tmp_path / "events.db"),
        state,
        SqliteRecommendationStore(tmp_path / "recs.db"),
    )
    runner.log.append([ev("a", "x", 1), ev("poison", "y", 2), ev("b", "z", 3)])
    runner.run_until_idle()
    assert runner.offset == 3 and runner.counters.failed == 1
    assert runner.recs.get("b") is not None and runner.recs.get("poison") is None
    assert state.dead_letters()[0]["reason"].startswith("processing-error")
