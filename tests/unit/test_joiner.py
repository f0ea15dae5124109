"""The joiner on a fake clock: window edges, late rewards, aggregation, defaults, deferral."""

from __future__ import annotations

import pytest

from recloop.core.errors import InvalidInputError
from recloop.core.types import Action, Activation, Decision, Reward
from recloop.log.joiner import Joiner

T0 = 1000.0


def decision(event_id: str, ts: float = T0, deferred: bool = False) -> Decision:
    return Decision(
        event_id=event_id,
        loop="t",
        timestamp=ts,
        context={},
        actions=(Action("a"), Action("b")),
        ranking=("a", "b"),
        probabilities=(0.9, 0.1),
        chosen="a",
        chosen_index=0,
        probability=0.9,
        model_version="default",
        policy="default",
        deferred=deferred,
    )


def test_reward_inside_window_is_joined_at_window_end() -> None:
    j = Joiner(exp_unit=10.0)
    j.on_decision(decision("e1"), 1)
    assert j.on_reward(Reward("e1", 1.0, T0 + 9.999), 2) is None
    assert j.close_until(T0 + 9.99) == ([], [])  # window still open
    joined, letters = j.close_until(T0 + 10.0)
    assert letters == []
    assert [(e.decision.event_id, e.reward, e.n_rewards, e.used_default) for e in joined] == [
        ("e1", 1.0, 1, False)
    ]
    assert joined[0].joined_at == T0 + 10.0


def test_reward_exactly_at_deadline_counts_and_just_after_is_dead_lettered() -> None:
    j = Joiner(exp_unit=10.0)
    j.on_decision(decision("e1"), 1)
    assert j.on_reward(Reward("e1", 2.0, T0 + 10.0), 2) is None
    late = j.on_reward(Reward("e1", 5.0, T0 + 10.001), 3)
    assert late is not None and late.reason == "expired-event" and late.source_offset == 3
    joined, _ = j.close_until(T0 + 11)
    assert joined[0].reward == 2.0


def test_no_reward_gets_the_default() -> None:
    j = Joiner(exp_unit=1.0, default_reward=-0.5)
    j.on_decision(decision("e1"), 1)
    joined, _ = j.close_until(T0 + 1.0)
    assert joined[0].reward == -0.5 and joined[0].used_default and joined[0].n_rewards == 0


def test_reward_after_window_closed_is_unknown_to_the_joiner() -> None:
    j = Joiner(exp_unit=1.0)
    j.on_decision(decision("e1"), 1)
    j.close_until(T0 + 2)
    letter = j.on_reward(Reward("e1", 1.0, T0 + 0.5), 5)
    assert letter is not None and letter.reason == "unknown-event"


def test_unknown_event_is_dead_lettered_not_dropped() -> None:
    j = Joiner(exp_unit=1.0)
    letter = j.on_reward(Reward("nope", 1.0, T0), 7)
    assert letter is not None
    assert (letter.reason, letter.event_id, letter.source_offset) == ("unknown-event", "nope", 7)


@pytest.mark.parametrize(("rule", "expected"), [("earliest", 3.0), ("last", 1.0), ("sum", 6.0)])
def test_aggregation_rules(rule: str, expected: float) -> None:
    j = Joiner(exp_unit=10.0, aggregation=rule)
    j.on_decision(decision("e1"), 1)
    # logged out of timestamp order on purpose: aggregation follows reward time
    j.on_reward(Reward("e1", 2.0, T0 + 2), 2)
    j.on_reward(Reward("e1", 3.0, T0 + 1), 3)
    j.on_reward(Reward("e1", 1.0, T0 + 3), 4)
    joined, _ = j.close_until(T0 + 10)
    assert joined[0].reward == expected and joined[0].n_rewards == 3


def test_deferred_decision_waits_for_activation_and_window_restarts() -> None:
    j = Joiner(exp_unit=10.0)
    j.on_decision(decision("d1", deferred=True), 1)
    assert j.on_activation(Activation("d1", T0 + 8), 2) is None
    j.on_reward(Reward("d1", 1.0, T0 + 15), 3)  # inside the window that starts at activation
    assert j.close_until(T0 + 12) == ([], [])  # the original deadline no longer applies
    joined, letters = j.close_until(T0 + 18)
    assert letters == [] and [e.reward for e in joined] == [1.0]


def test_deferred_decision_never_activated_is_not_learned() -> None:
    j = Joiner(exp_unit=10.0)
    j.on_decision(decision("d1", deferred=True), 4)
    j.on_reward(Reward("d1", 1.0, T0 + 1), 5)
    joined, letters = j.close_until(T0 + 10)
    assert joined == []
    assert [(x.reason, x.event_id, x.source_offset) for x in letters] == [
        ("not-activated", "d1", 4)
    ]


def test_activation_after_window_is_dead_lettered() -> None:
    j = Joiner(exp_unit=10.0)
    j.on_decision(decision("d1", deferred=True), 1)
    letter = j.on_activation(Activation("d1", T0 + 10.5), 2)
    assert letter is not None and letter.reason == "expired-event"


def test_windows_close_in_deadline_order_and_low_watermark_tracks_pending() -> None:
    j = Joiner(exp_unit=5.0)
    j.on_decision(decision("a", T0), 10)
    j.on_decision(decision("b", T0 + 1), 11)
    j.on_decision(decision("c", T0 + 2), 12)
    assert j.low_watermark() == 10
    joined, _ = j.close_until(T0 + 6)
    assert [e.decision.event_id for e in joined] == ["a", "b"]
    assert j.low_watermark() == 12 and len(j) == 1


def test_exp_unit_must_be_positive() -> None:
    with pytest.raises(InvalidInputError):
        Joiner(exp_unit=0)
