"""VW policy/learner: the fast extension path agrees with the public API; text caching."""

from __future__ import annotations

import numpy as np
import pytest
import vowpalwabbit

from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.core.types import Action, Decision, JoinedExample
from recloop.features.vw_text import VWText, adf_example
from recloop.policies.vw import (
    VWLearner,
    VWPolicy,
    learn_lines,
    predict_costs,
    workspace_from_bytes,
)

ACTIONS = [Action(f"a{j}", {"topic": f"t{j % 3}", "price": float(j)}) for j in range(6)]


def _example(i: int, chosen: int, reward: float) -> JoinedExample:
    d = Decision(
        event_id=f"e{i}",
        loop="t",
        timestamp=0.0,
        context={"user": f"u{i % 4}", "x": i % 5},
        actions=tuple(ACTIONS),
        ranking=tuple(a.id for a in ACTIONS),
        probabilities=tuple([1 / 6] * 6),
        chosen=ACTIONS[chosen].id,
        chosen_index=chosen,
        probability=1 / 6,
        model_version="default",
        policy="default",
    )
    return JoinedExample(d, reward, 1, False, 0.0)


def test_fast_path_matches_public_api() -> None:
    fast = vowpalwabbit.Workspace("--cb_adf --cb_type mtr -q CA --quiet")
    slow = vowpalwabbit.Workspace("--cb_adf --cb_type mtr -q CA --quiet")
    rng = np.random.default_rng(0)
    for i in range(300):
        ex = _example(i, int(rng.integers(6)), float(rng.random()))
        d = ex.decision
        lines = VWText().labelled(d.context, list(d.actions), d.chosen_index, -ex.reward, 1 / 6)
        learn_lines(fast, lines)
        slow.learn(lines)
    probe = adf_example({"user": "u1", "x": 3}, ACTIONS)
    assert predict_costs(fast, probe) == pytest.approx(slow.predict(probe), abs=1e-6)
    assert predict_costs(fast, probe) != [0.0] * 6


def test_learner_round_trips_through_bytes_and_serves() -> None:
    learner = VWLearner("--cb_adf --cb_type mtr -q CA")
    for i in range(400):  # action a2 pays off for everyone
        chosen = i % 6
        learner.learn_one(_example(i, chosen, 1.0 if chosen == 2 else 0.0))
    policy = VWPolicy.from_bytes(learner.snapshot(), "7")
    scores = policy.scores({"user": "u1", "x": 1}, ACTIONS)
    assert int(np.argmax(scores)) == 2
    assert scores == pytest.approx(learner.scores({"user": "u1", "x": 1}, ACTIONS))
    resumed = VWLearner.from_bytes(learner.snapshot())
    assert resumed.scores({"user": "u1", "x": 1}, ACTIONS) == pytest.approx(scores)
    policy.close()
    learner.close()


def test_incompatible_and_corrupt_models_are_rejected(tmp_path: object) -> None:
    regression = vowpalwabbit.Workspace("--quiet")
    import os
    import tempfile

    fd, path = tempfile.mkstemp()
    os.close(fd)
    regression.save(path)
    with open(path, "rb") as handle:
        blob = handle.read()
    os.unlink(path)
    with pytest.raises(ModelRejectedError):
        workspace_from_bytes(blob)
    with pytest.raises(ModelRejectedError):
        workspace_from_bytes(b"\x00garbage")


def test_bad_vw_arguments_are_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="'--no_such_flag' is not allowed"):
        VWLearner("--cb_adf --no_such_flag")
    with pytest.raises(InvalidInputError, match="rejected the arguments"):
        VWLearner("--cb_adf --cb_type mtr --cb_type ips")  # allowed options VW refuses


def test_cached_text_equals_fresh_text_and_bools_are_numbers() -> None:
    text = VWText(max_cached_actions=2)
    acts = [
        Action("a", {"flag": True, "n": 1}),
        Action("b", {"flag": 1, "n": True}),
        Action("c d|e:f", {"tags": ["x y", "z"], "nested": {"k": "v"}}),
    ]
    for _ in range(3):  # the cache fills, clears and refills
        assert text.example({"u": "1"}, acts) == adf_example({"u": "1"}, acts)
    lines = adf_example({}, acts)
    assert lines[1] == "|A id=a flag:1 n:1"
    assert lines[2] == "|A id=b flag:1 n:1"
    assert lines[3] == "|A id=c_d_e_f tags=x_y tags=z |Anested k=v"  # a mapping: a namespace
