"""The in-process Loop: explore, log, join, learn, deploy, evaluate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.errors import (
    DuplicateEventError,
    ExpiredEventError,
    InvalidInputError,
    UnknownEventError,
    UnknownModelError,
)
from recloop.simulators.synthetic import SyntheticPopulation

ACTIONS = [{"id": "a", "features": {"x": 1}}, {"id": "b", "features": {"x": 2}}, "c"]


def test_rank_returns_full_ranking_with_true_probabilities(loop: Loop) -> None:
    d = loop.rank({"user": "u1"}, ACTIONS, event_id="e1")
    assert d.event_id == "e1"
    assert sorted(d.ranking) == ["a", "b", "c"]
    assert d.ranking[0] == d.chosen
    assert sum(d.probabilities) == pytest.approx(1.0)
    assert d.probability == d.probabilities[0]
    # epsilon-greedy 0.2 over 3 actions with the first-action default policy
    assert dict(zip(d.ranking, d.probabilities, strict=True)) == pytest.approx(
        {"a": 0.8 + 0.2 / 3, "b": 0.2 / 3, "c": 0.2 / 3}
    )
    assert d.model_version == "default" and d.policy == "default:first-action"


def test_sampling_is_replayable_from_event_id(tmp_path: Path) -> None:
    chosen = []
    for run in range(2):
        with Loop.open(tmp_path / str(run), start=False, seed=7) as lp:
            chosen.append([lp.rank({}, ACTIONS, event_id=f"e{i}").chosen for i in range(200)])
    assert chosen[0] == chosen[1]
    assert len(set(chosen[0])) == 3  # exploration does happen


def test_excluded_actions_get_zero_probability_and_go_last(loop: Loop) -> None:
    for i in range(30):
        d = loop.rank({}, ACTIONS, event_id=f"x{i}", excluded_actions=["a"])
        assert d.chosen != "a"
        assert d.ranking[-1] == "a" and d.probabilities[-1] == 0.0


def test_named_default_policy(tmp_path: Path) -> None:
    with Loop.open(
        tmp_path, start=False, default_policy="fixed", default_action_id="b", explorer="greedy"
    ) as lp:
        d = lp.rank({}, ACTIONS)
        assert d.chosen == "b" and d.policy == "default:fixed" and d.probability == 1.0


@pytest.mark.parametrize(
    ("context", "actions", "message"),
    [
        ({}, [], "must not be empty"),
        ({}, ["a", "a"], "duplicate action id"),
        ({"x": math.nan}, ["a"], "not a finite number"),
        ({}, [{"id": "a", "features": {"f": math.inf}}], "not a finite number"),
        ({"x": object()}, ["a"], "unsupported type"),
        ({}, [{"features": {}}], "must be a string"),
    ],
)
def test_bad_rank_input_is_a_typed_error_and_counted(
    loop: Loop, context: dict[str, object], actions: list[object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        loop.rank(context, actions)  # type: ignore[arg-type]
    assert loop.stats.get("rejected_total:invalid-input") == 1
    assert loop.log.count("decision") == 0


def test_duplicate_event_id_is_rejected_and_not_logged_twice(loop: Loop) -> None:
    loop.rank({}, ACTIONS, event_id="dup")
    with pytest.raises(DuplicateEventError):
        loop.rank({}, ACTIONS, event_id="dup")
    assert loop.log.count("decision") == 1


def test_rewards_for_unknown_and_expired_events_are_dead_lettered(
    loop: Loop, clock: FakeClock
) -> None:
    with pytest.raises(UnknownEventError):
        loop.reward("missing", 1.0)
    d = loop.rank({}, ACTIONS)
    clock.advance(5.01)
    with pytest.raises(ExpiredEventError):
        loop.reward(d.event_id, 1.0)
    reasons = sorted(x.reason for x in loop.log.dead_letters())
    assert reasons == ["expired-event", "unknown-event"]
    assert loop.log.count("reward") == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, "1", None, True])
def test_non_numeric_rewards_are_rejected(loop: Loop, value: object) -> None:
    d = loop.rank({}, ACTIONS)
    with pytest.raises(InvalidInputError):
        loop.reward(d.event_id, value)  # type: ignore[arg-type]
    assert loop.log.count("reward") == 0


def test_retried_reward_with_same_id_counts_once(loop: Loop, clock: FakeClock) -> None:
    d = loop.rank({}, ACTIONS)
    loop.reward(d.event_id, 1.0, reward_id="r1")
    with pytest.raises(DuplicateEventError):
        loop.reward(d.event_id, 1.0, reward_id="r1")
    clock.advance(6)
    loop.step()
    [ex] = list(loop.joined.iter_all())
    assert ex.reward == 1.0 and ex.n_rewards == 1


def test_join_learn_checkpoint_and_serve_new_model(tmp_path: Path, clock: FakeClock) -> None:
    with Loop.open(
        tmp_path,
        start=False,
        clock=clock,
        exp_unit_seconds=1.0,
        checkpoint_every_examples=10,
        checkpoint_every_seconds=1000,
    ) as lp:

        def round_of(n: int) -> int:
            for i in range(n):
                d = lp.rank({"u": i % 2}, ACTIONS)
                lp.reward(d.event_id, 1.0 if d.chosen == "b" else 0.0)
            clock.advance(1.3)
            return lp.step()

        assert round_of(12) == 12  # >= 10 examples since the last checkpoint: a version
        assert round_of(5) == 5  # 5 < 10 and little time: no version yet
        assert [v.meta["learner_offset"] for v in lp.model_versions()] == [12]
        assert round_of(5) == 5
        versions = lp.model_versions()
        assert [v.meta["learner_offset"] for v in versions] == [22, 12]
        assert lp.model_version == versions[0].version
        assert lp.rank({"u": 0}, ACTIONS).model_version == versions[0].version
        clock.advance(1000)
        lp.rank({}, ACTIONS)
        clock.advance(1.3)
        lp.step()  # two examples (with the rank above), but the checkpoint time has passed
        assert [v.meta["learner_offset"] for v in lp.model_versions()] == [24, 22, 12]


def test_deferred_decision_is_learned_only_after_activation(loop: Loop, clock: FakeClock) -> None:
    shown = loop.rank({}, ACTIONS, defer_activation=True)
    hidden = loop.rank({}, ACTIONS, defer_activation=True)
    loop.activate(shown.event_id)
    loop.activate(shown.event_id)  # idempotent
    loop.reward(shown.event_id, 1.0)
    clock.advance(6)
    loop.step()
    joined = {e.decision.event_id for e in loop.joined.iter_all()}
    assert joined == {shown.event_id}
    assert [x.reason for x in loop.log.dead_letters()] == ["not-activated"]
    assert hidden.event_id not in joined


def test_rollback_pins_a_version_and_follow_latest_undoes_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, checkpoint_every_examples=5
    ) as lp:

        def round_of_five() -> None:
            for _ in range(5):
                d = lp.rank({}, ACTIONS)
                lp.reward(d.event_id, 1.0)
            clock.advance(2)
            lp.step()

        round_of_five()
        round_of_five()
        assert lp.model_version == "2"
        lp.activate_model("1")
        assert lp.model_version == "1"
        round_of_five()
        newest = lp.models.newest()
        assert newest is not None and newest.version == "3"
        assert lp.model_version == "1"  # still pinned
        lp.follow_latest()
        assert lp.model_version == "3"
        with pytest.raises(UnknownModelError):
            lp.activate_model("99")


def test_corrupt_model_is_rejected_and_previous_keeps_serving(
    tmp_path: Path, clock: FakeClock
) -> None:
    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, checkpoint_every_examples=5
    ) as lp:
        for _ in range(5):
            lp.rank({}, ACTIONS)
        clock.advance(2)
        lp.step()
        assert lp.model_version == "1"
        lp.models.put(b"not a vw model", {"kind": "vw-cb"})
        lp.refresh_model()
        assert lp.model_version == "1"
        assert lp.stats.get("models_rejected_total") == 1
        assert lp.rank({}, ACTIONS).model_version == "1"


def test_restart_resumes_learner_and_joiner_from_offsets(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = {
        "exp_unit_seconds": 1.0,
        "checkpoint_every_examples": 4,
        "checkpoint_every_seconds": 1e6,
        "reward_max": 5.0,
    }
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        ids = [lp.rank({}, ACTIONS).event_id for _ in range(6)]
        clock.advance(2)
        lp.step()  # learns 6 and checkpoints
        ids += [lp.rank({}, ACTIONS).event_id for _ in range(3)]
        clock.advance(2)
        lp.step()  # learns 3 more: not yet in any model version
        pending = lp.rank({}, ACTIONS)  # its window is still open at the "crash"
        lp.reward(pending.event_id, 3.0)
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        assert lp.pipeline.learner_offset == 6
        assert lp.pipeline.learner is not None
        assert lp.pipeline.learner.examples_learned == 6
        clock.advance(2)
        lp.step()
        assert lp.pipeline.learner_offset == 10  # re-learned 7-9 once, then the new one
        assert lp.pipeline.learner.examples_learned == 10
        joined = list(lp.joined.iter_all())
        assert [e.decision.event_id for e in joined] == [*ids, pending.event_id]
        assert joined[-1].reward == 3.0


def test_learning_picks_best_action_for_context(tmp_path: Path) -> None:
    """After 5,000 events the greedy choice is the best one in >=95% of decisions, and the
    online average reward (events 5,001-6,000) is within 5% of the epsilon-greedy optimum.

    The online reward is the expected click rate of each logged distribution (exact given
    the simulator), which removes the coin-flip noise of 1,000 Bernoulli draws."""
    clock = FakeClock()
    population = SyntheticPopulation(seed=3)
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, seed=3) as lp:
        late_reward = 0.0
        late_greedy_best = late = 0
        for i in range(1, 6001):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), event_id=f"learn-{i}")
            r = population.reward(ctx, d.chosen)
            if r:
                lp.reward(d.event_id, r)
            if i > 5000:
                late += 1
                late_reward += sum(
                    p * population.click_probability(ctx, a)
                    for a, p in zip(d.ranking, d.probabilities, strict=True)
                )
                greedy = max(zip(d.probabilities, d.ranking, strict=True))[1]
                late_greedy_best += greedy == population.best_action(ctx)
            clock.advance(0.01)
            if i % 50 == 0:
                lp.step()
        assert late_greedy_best / late >= 0.95
        target = population.epsilon_greedy_optimum(0.2)
        assert late_reward / late >= 0.95 * target


def test_reward_committed_late_is_still_joined(
    loop: Loop, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reward stamped inside the window but slow to commit (lock wait, GIL) must not be
    missed by a pipeline step whose clock reading is already past the window."""
    import threading
    import time

    d = loop.rank({}, ACTIONS)
    clock.advance(4.9)  # exp_unit is 5 s
    original = loop.log.append_reward
    stamped = threading.Event()

    def slow_append(reward: Any) -> int:
        stamped.set()
        time.sleep(0.3)
        return original(reward)

    monkeypatch.setattr(loop.log, "append_reward", slow_append)
    worker = threading.Thread(target=loop.reward, args=(d.event_id, 1.0))
    worker.start()
    stamped.wait(5)
    clock.advance(10)
    loop.step()
    worker.join()
    [ex] = list(loop.joined.iter_all())
    assert ex.n_rewards == 1 and ex.reward == 1.0
    assert loop.log.dead_letters() == []


def test_any_policy_object_can_be_a_candidate(loop: Loop, clock: FakeClock) -> None:
    import numpy as np

    class PreferC:
        name = "prefer-c"
        version = "1"

        def scores(self, context: Any, actions: Any) -> np.ndarray:
            return np.array([1.0 if a.id == "c" else 0.0 for a in actions])

    before = loop.rank({}, ACTIONS, event_id="before")  # history is replayed for a new candidate
    loop.reward(before.event_id, 1.0 if before.chosen == "c" else 0.0)
    clock.advance(6)
    loop.step()
    loop.add_candidate("prefer-c", PreferC())
    for i in range(40):
        d = loop.rank({}, ACTIONS, event_id=f"e{i}")
        loop.reward(d.event_id, 1.0 if d.chosen == "c" else 0.0)
    clock.advance(6)
    loop.step()
    [cand] = loop.evaluations()["candidates"]
    assert cand["name"] == "prefer-c" and cand["n"] == 41
    assert cand["snips"]["value"] == pytest.approx(1.0)  # every logged 'c' was rewarded
    loop.unregister_policy("prefer-c")
    assert loop.evaluations()["candidates"] == []


def test_rollback_is_not_undone_by_a_concurrent_refresh(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background refresh that read the store before a pin must not swap its (newer)
    model in after the pinned one."""
    import threading

    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, checkpoint_every_examples=1
    ) as lp:
        for _ in range(2):
            lp.rank({}, ACTIONS)
            clock.advance(2)
            lp.step()
        lp.activate_model("1")
        lp.models.follow_newest()  # the store now says "2"; the loop still serves "1"
        original = lp.served._load
        loading = threading.Event()
        release = threading.Event()

        def slow_load(version: Any) -> Any:
            if version.version == "2":
                loading.set()
                release.wait(5)
            return original(version)

        monkeypatch.setattr(lp.served, "_load", slow_load)
        tick = threading.Thread(target=lp.refresh_model)
        tick.start()
        assert loading.wait(5)
        rollback = threading.Thread(target=lp.activate_model, args=("1",))
        rollback.start()
        rollback.join(0.2)
        release.set()
        tick.join(5)
        rollback.join(5)
        assert lp.models.pinned() == "1"
        assert lp.model_version == "1"


def test_catch_up_after_restart_is_bounded_per_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long evaluator/learner catch-up must not stall joining: each step does a slice."""
    from recloop.learning import pipeline

    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        lp.register_policy("always-a", "fixed", {"action_id": "a"})
        for i in range(25):
            lp.rank({}, ACTIONS, event_id=f"e{i}")
        clock.advance(2)
        lp.step()
    monkeypatch.setattr(pipeline, "EVALUATE_CATCH_UP", 10)
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        assert lp.evaluations()["examples"] == 0  # nothing replayed at open
        late = lp.rank({}, ACTIONS, event_id="late")
        clock.advance(2)
        assert lp.step() == 1  # the new decision is joined in the first step
        assert lp.evaluations()["examples"] == 10
        lp.step()
        lp.step()
        report = lp.evaluations()
        assert report["examples"] == 26 and report["candidates"][0]["n"] == 26
        assert lp.joined.is_joined(late.event_id)


def test_a_new_candidate_catches_up_on_history_in_bounded_slices(
    loop: Loop, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recloop.learning import pipeline

    for i in range(25):
        d = loop.rank({}, ACTIONS, event_id=f"h{i}")
        loop.reward(d.event_id, 1.0 if d.chosen == "a" else 0.0)
    clock.advance(6)
    loop.step()
    monkeypatch.setattr(pipeline, "EVALUATE_CATCH_UP", 10)
    loop.register_policy("always-a", "fixed", {"action_id": "a"})  # returns at once
    [cand] = loop.evaluations()["candidates"]
    assert (cand["n"], cand["caught_up"]) == (0, False)
    loop.step()
    [cand] = loop.evaluations()["candidates"]
    assert (cand["n"], cand["caught_up"]) == (10, False)
    live = loop.rank({}, ACTIONS, event_id="live")  # new examples keep flowing meanwhile
    loop.reward(live.event_id, 1.0 if live.chosen == "a" else 0.0)
    clock.advance(6)
    loop.step()
    loop.step()
    [cand] = loop.evaluations()["candidates"]
    assert (cand["n"], cand["caught_up"]) == (26, True)
    assert cand["snips"]["value"] == pytest.approx(1.0)  # every logged 'a' was rewarded
