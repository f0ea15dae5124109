"""The score-fusion DDPG as a loop's learner and served policy: it learns a weight per
context that beats the best single weight, logs each decision's exact probability with the
weight it served (so a candidate estimated off-policy from its log covers its true value),
resumes from its newest version, and refuses bad parameters, versions and features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch

from recloop import Loop
from recloop.agents.fusion_loop import MAGIC, FusionLearner, FusionPolicy, FusionSpec
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.core.types import Action
from recloop.simulators.weight_shop import FixedWeight, WeightShop, best_single_weight, greedy_value

pytestmark = pytest.mark.usefixtures("one_thread")


def _play(lp: Loop, clock: FakeClock, shop: WeightShop, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        ctx, acts = shop.context(), shop.actions()
        d = lp.rank(ctx, acts, event_id=f"e-{i}")
        lp.reward(d.event_id, shop.value(ctx, next(a for a in acts if a.id == d.chosen)))
        clock.advance(0.01)
        if i % 50 == 0:
            lp.step()


def test_it_learns_a_weight_per_context_that_beats_the_best_single_weight(tmp_path: Path) -> None:
    clock = FakeClock()
    with Loop.open(
        tmp_path,
        start=False,
        clock=clock,
        exp_unit_seconds=1.0,
        seed=1,
        learner="fusion",
    ) as lp:
        _play(lp, clock, WeightShop(1), 7000)
        served = lp.served.slot.current.policy
        assert isinstance(served, FusionPolicy) and lp.served.slot.current.label == "fusion"
        bargain, hurry = (
            np.mean([served.mean_weight({"user_id": f"u{u}", "hurry": h}) for u in range(50)])
            for h in (0.0, 1.0)
        )
        assert bargain < 0.8 and hurry > 2.2, (bargain, hurry)  # the best: 0.3 and 3
        learned = greedy_value(served)
        assert lp.stats.get("learner_agent_learned") > 6000  # the agent's counts, exported
        assert 0 < lp.stats.get("learner_agent_skipped_without_weight") < 1000
        best_single, _ = best_single_weight(np.arange(0.0, 4.01, 0.25).tolist())
        assert learned > best_single + 0.01, (learned, best_single)

        # the decisions carry the served weight and the exact probability of their leader
        d = lp.log.get_decision("e-6999")
        assert d is not None and d.exploration is not None and d.policy == "fusion"
        weight, density = d.exploration["weight"], d.exploration["density"]
        acts = list(d.actions)
        exact = served.distribution(d.context, acts)
        assert d.probability == pytest.approx(exact[d.chosen_index], rel=1e-9)
        mean = served.mean_weight(d.context)
        assert density == pytest.approx(served.noise.density(mean, weight))
        ranked = np.argsort(-served.scores(d.context, acts))
        # the draw's own scores (the Decider ranks the rest by them) are scores()'s
        drawn_scores = served.draw(d.context, acts, 0.3).scores
        np.testing.assert_allclose(drawn_scores, served.scores(d.context, acts))
        assert d.probability < 1.0 and acts[ranked[0]].id in d.ranking


def test_another_weight_is_estimated_off_policy_from_its_decisions(tmp_path: Path) -> None:
    """The logged probabilities are exact, so inverse propensity weighting over the fusion
    loop's own decisions estimates a policy it did not serve (one weight, 2, for everyone)
    without bias: its interval covers the value that policy earns when served."""
    clock = FakeClock()
    still = {"noise_sigma": 0.7, "actor_delay": 10**9, "warmup_requests": 1}
    with Loop.open(
        tmp_path,
        start=False,
        clock=clock,
        exp_unit_seconds=1.0,
        seed=5,
        learner="fusion",
        fusion=still,
    ) as lp:
        lp.add_candidate("a=2", FixedWeight(2.0))
        _play(lp, clock, WeightShop(5), 4000)
        clock.advance(5.0)
        lp.step()
        report = next(c for c in lp.evaluations()["candidates"] if c["name"] == "a=2")
    truth = greedy_value(FixedWeight(2.0), seed=7, requests=4000)
    assert report["n"] == 4000
    assert report["ips"]["low"] <= truth <= report["ips"]["high"], (report["ips"], truth)
    assert report["ips"]["high"] - report["ips"]["low"] < 0.03  # informative, not vacuous


def test_a_restart_resumes_from_the_newest_version(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = {"exp_unit_seconds": 1.0, "seed": 2, "learner": "fusion"}
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        _play(lp, clock, WeightShop(2), 1500)
        clock.advance(5.0)
        lp.step()
        lp.pipeline.checkpoint(clock.now())
        learner = lp.pipeline.learner
        assert isinstance(learner, FusionLearner)
        learned, weights = learner.examples_learned, learner.nets.state_dict()
        version = lp.models.latest()
        assert version is not None and version.meta["kind"] == "fusion"
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as again:
        resumed = again.pipeline.learner
        assert isinstance(resumed, FusionLearner) and resumed.examples_learned == learned
        assert all(np.array_equal(weights[k], resumed.nets.state_dict()[k]) for k in weights)
        assert again.model_version == version.version


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"gamma": 0.9}, "no parameter"),
        ({"noise_sigma": "big"}, "must be a number"),
        ({"a_min": 1.5}, "must contain 1"),
        ({"a_max": float("nan")}, "a_max must be in"),
        ({"context_dim": 0}, "context_dim must be in"),
        ({"hidden": 10**9}, "hidden must be in"),  # would allocate gigabytes
        ({"batch_size": 64, "replay_size": 10}, "replay_size must be in"),
        ({"learning_rate": 0.0}, "learning_rate must be in"),
        ({"noise_sigma": 9.0}, "noise_sigma must be in"),
    ],
)
def test_bad_parameters_are_refused_before_the_loop_opens(tmp_path: Path, params, why) -> None:
    with pytest.raises(InvalidInputError, match=why):
        Loop.open(tmp_path, start=False, learner="fusion", fusion=params)


def test_bad_versions_are_rejected() -> None:
    learner = FusionLearner(FusionSpec.from_params({"hidden": 8}))
    blob = learner.snapshot()
    assert isinstance(FusionPolicy.from_bytes(blob, "1"), FusionPolicy)
    header = {
        **learner.spec.header(),
        "learned": 0,
        "learned_with_weight": 0,
        "allowed": [2.0, 3.0],
    }  # 1 outside
    outside = MAGIC + safetensors.torch.save(
        learner.nets.state_dict(), metadata={"header": json.dumps(header)}
    )
    huge = {**header, "allowed": [0.5, 2.0], "config": {**header["config"], "hidden": 10**7}}
    declared_huge = MAGIC + safetensors.torch.save(
        learner.nets.state_dict(), metadata={"header": json.dumps(huge)}
    )  # a header declaring a network of 10^7 units: refused before one is built
    for bad in (MAGIC + b"junk", blob[: len(blob) // 2], outside, declared_huge):
        with pytest.raises(ModelRejectedError):
            FusionPolicy.from_bytes(bad, "2")
    with pytest.raises(ModelRejectedError, match="shape"):
        FusionLearner.from_bytes(blob, {"hidden": 16})


def test_candidates_without_the_predictions_are_an_input_error(tmp_path: Path) -> None:
    clock = FakeClock()
    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, learner="fusion"
    ) as lp:
        _play(lp, clock, WeightShop(3), 60)
        clock.advance(5.0)
        lp.step()
        lp.pipeline.checkpoint(clock.now())
        lp.served.refresh()
        assert isinstance(lp.served.slot.current.policy, FusionPolicy)
        before = lp.stats.get("rejected_total:invalid-input")
        for features in (
            {"click": 0.1, "pay": 0.2},
            {"click": 0.1, "pay": True, "phi": 0.1},
            {"click": float("nan"), "pay": 0.1, "phi": 0.1},
        ):
            with pytest.raises(InvalidInputError):
                lp.rank({"hurry": 1.0}, [Action("a", features), *WeightShop(4).actions()])
        assert lp.stats.get("rejected_total:invalid-input") == before + 3
