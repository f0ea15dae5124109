"""The keyed user-state logic: properties over any interleaving, lateness, activeness."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.core.errors import InvalidInputError
from recloop.streaming.events import BEHAVIOURS, BehaviourEvent, parse_event
from recloop.streaming.state import UserState, UserStateConfig, UserStream

CFG = UserStateConfig(last_n=4, session_gap_seconds=100.0, allowed_lateness_seconds=30.0)


def fold_in_order(events: list[BehaviourEvent], cfg: UserStateConfig) -> UserState:
    """The reference: a user's events applied in event-time order."""
    state = UserState(events[0].user_id)
    for e in sorted(events, key=lambda e: e.order):
        state.apply(e, cfg)
    return state


@st.composite
def user_logs(draw, max_users=4, max_events=25):
    """Per-user event lists whose arrival disorder stays within the allowed lateness, then
    one arbitrary interleaving of all users' arrivals."""
    per_user: dict[str, list[BehaviourEvent]] = {}
    for u in range(draw(st.integers(1, max_users))):
        n = draw(st.integers(1, max_events))
        gaps = draw(st.lists(st.floats(0.0, 300.0), min_size=n, max_size=n))
        times = [1000.0 + sum(gaps[: i + 1]) for i in range(n)]
        # arrival order: event time plus a delay < lateness -> disorder within lateness
        delays = draw(st.lists(st.floats(0.0, 29.0), min_size=n, max_size=n))
        items = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
        kinds = draw(st.lists(st.sampled_from(BEHAVIOURS), min_size=n, max_size=n))
        events = [
            BehaviourEvent(f"u{u}", f"i{items[i]}", kinds[i], times[i], f"u{u}-e{i}")
            for i in range(n)
        ]
        order = sorted(range(n), key=lambda i: times[i] + delays[i])
        per_user[f"u{u}"] = [events[i] for i in order]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    queues = {u: list(evs) for u, evs in per_user.items()}
    arrivals = []
    while any(queues.values()):
        u = rng.choice([k for k, q in queues.items() if q])
        arrivals.append(queues[u].pop(0))
    return per_user, arrivals


@settings(max_examples=150, deadline=None)
@given(user_logs())
def test_any_interleaving_equals_event_time_order(logs):
    per_user, arrivals = logs
    streams: dict[str, UserStream] = {}
    for e in arrivals:
        outcome = streams.setdefault(e.user_id, UserStream.new(e.user_id)).add(e, CFG)
        assert outcome == "applied"  # disorder stays within lateness: nothing refused
    for user, events in per_user.items():
        got, want = streams[user].state, fold_in_order(events, CFG)
        assert got.to_dict() == want.to_dict()  # the same operations in the same order
        assert len(got.last_items) <= CFG.last_n
        assert got.version == len(events)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 500.0), st.integers(0, 5)), min_size=1, max_size=40),
)
def test_arbitrary_disorder_equals_sorted_fold_of_accepted_events(raw):
    """However late events come, the state is the sorted fold of the ones accepted, and
    exactly the refused ones were older than the lateness horizon when they arrived."""
    events = [BehaviourEvent("u", f"i{item}", "click", t, f"e{i}") for i, (t, item) in
              enumerate(raw)]  # fmt: skip
    stream = UserStream.new("u")
    accepted = []
    newest = -math.inf
    for e in events:
        outcome = stream.add(e, CFG)
        assert (outcome == "late") == (e.timestamp < newest - CFG.allowed_lateness_seconds)
        if outcome == "applied":
            accepted.append(e)
            newest = max(newest, e.timestamp)
    assert stream.state.to_dict() == fold_in_order(accepted, CFG).to_dict()
    assert len(stream.state.last_items) <= CFG.last_n


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=30))
def test_activeness_matches_the_drn_formula(gaps):
    cfg = UserStateConfig(session_gap_seconds=1800.0)
    state = UserState("u")
    t, expected = 0.0, None
    for i, gap in enumerate(gaps):
        t += gap
        state.apply(BehaviourEvent("u", "i", "view", t, f"e{i}"), cfg)
        if expected is None:
            expected = cfg.activeness_start
        else:
            expected *= math.exp(-cfg.activeness_decay_per_second * gap)
            if gap > cfg.session_gap_seconds:
                expected = min(1.0, expected + cfg.activeness_return_boost)
        assert state.activeness == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert 0.0 <= state.activeness <= 1.0
    later = state.activeness_at(t + 3600, cfg)
    assert later == pytest.approx(state.activeness * math.exp(-cfg.activeness_decay_per_second
                                                              * 3600))  # fmt: skip


def test_sessions_counts_and_last_n_by_hand():
    s = UserStream.new("u")
    for i, (t, item, b) in enumerate(
        [
            (0, "a", "view"),
            (10, "b", "click"),
            (20, "c", "buy"),
            (500, "d", "view"),
            (505, "e", "cart"),
            (506, "a", "view"),
        ]
    ):
        assert s.add(BehaviourEvent("u", item, b, float(t), f"e{i}"), CFG) == "applied"
    st_ = s.state
    assert st_.sessions == 2 and st_.session_start == 500.0
    assert st_.counts == {"view": 3, "click": 1, "buy": 1, "cart": 1}
    assert [x[0] for x in st_.last_items] == ["c", "d", "e", "a"]  # last 4
    assert st_.version == 6
    # a late event inside the window is placed in order; one outside is refused
    assert s.add(BehaviourEvent("u", "z", "view", 490.0, "late-ok"), CFG) == "applied"
    assert [x[0] for x in s.state.last_items] == ["z", "d", "e", "a"]
    assert s.add(BehaviourEvent("u", "y", "view", 400.0, "too-late"), CFG) == "late"
    assert s.add(BehaviourEvent("u", "z", "view", 490.0, "late-ok"), CFG) == "duplicate"
    assert s.state.version == 7


def test_snapshot_round_trip_keeps_pending_events():
    s = UserStream.new("u")
    for i, t in enumerate([0.0, 100.0, 101.0, 102.0]):
        s.add(BehaviourEvent("u", f"i{i}", "view", t, f"e{i}"), CFG)
    assert s.pending  # the newest events may still be preceded by late ones
    back = UserStream.from_dict(s.to_dict(), CFG)
    assert back.state.to_dict() == s.state.to_dict()
    late = BehaviourEvent("u", "x", "click", 90.0, "late")
    assert back.add(late, CFG) == s.add(late, CFG) == "applied"
    assert back.state.to_dict() == s.state.to_dict()


def test_ttl_expiry():
    cfg = UserStateConfig(ttl_seconds=60.0)
    s = UserStream.new("u")
    s.add(BehaviourEvent("u", "i", "view", 100.0, "e"), cfg)
    assert not s.expired(150.0, cfg)
    assert s.expired(161.0, cfg)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"item_id": "i", "behaviour": "view"}, "user_id"),
        ({"user_id": "u", "behaviour": "view"}, "item_id"),
        ({"user_id": "u", "item_id": "i", "behaviour": "like"}, "unknown behaviour"),
        ({"user_id": "u", "item_id": "i", "behaviour": "view", "timestamp": "x"}, "timestamp"),
        ({"user_id": "u", "item_id": "i", "behaviour": "view", "timestamp": 1e12}, "future"),
        (
            {"user_id": "u", "item_id": "i", "behaviour": "view", "features": {"x": math.nan}},
            "finite",
        ),
        ([1, 2], "object"),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_event(raw, now=1000.0)


def test_parse_accepts_integer_ids_and_defaults():
    e = parse_event({"user_id": 7, "item_id": 9, "behavior": "buy"}, now=123.0)
    assert (e.user_id, e.item_id, e.behaviour, e.timestamp) == ("7", "9", "buy", 123.0)
    assert len(e.event_id) == 32


def test_a_user_idle_past_the_ttl_starts_afresh():
    cfg = UserStateConfig(ttl_seconds=1000.0)
    s = UserStream.new("u")
    s.add(BehaviourEvent("u", "a", "buy", 0.0, "e1"), cfg)
    s.add(BehaviourEvent("u", "b", "view", 500.0, "e2"), cfg)
    assert s.state.version == 2
    s.add(BehaviourEvent("u", "c", "view", 2000.0, "e3"), cfg)  # 1500 s idle > TTL
    assert s.state.version == 1 and s.state.counts == {"view": 1} and s.state.sessions == 1
    assert [x[0] for x in s.state.last_items] == ["c"]
