"""DRN exploring by DBGD's interleaving at the loop's decision point (``drn.exploration =
"interleave"``): each decision logs the exact probability of its lead and which list it
came from; the learner moves W towards the perturbation that won; and the loop still
learns the planted preference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recloop import Loop
from recloop.agents.dbgd import interleave, lead_probabilities, move_towards, perturbed_copy
from recloop.agents.drn_loop import DRNLearner, DRNSpec, InterleavingDRNPolicy
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError
from recloop.core.types import Decision, JoinedExample
from recloop.core.validation import to_action
from recloop.simulators.synthetic import SyntheticPopulation
from tests.unit.test_drn_loop import _play

pytestmark = pytest.mark.usefixtures("one_thread")
INTERLEAVE = {"exploration": "interleave"}


def test_the_lead_probabilities_are_what_interleaving_draws() -> None:
    rng = np.random.default_rng(0)
    greedy, explore = [3, 0, 4, 1, 2], [0, 3, 2, 4, 1]
    exact = lead_probabilities(greedy, explore, 3.0)
    assert exact.sum() == pytest.approx(1.0)
    n = 40_000
    counts = np.bincount(
        [interleave(greedy, explore, 1, rng, 3.0).items[0] for _ in range(n)], minlength=5
    )
    # a binomial count's standard deviation is at most sqrt(n / 4) = 100: 5 of them
    assert np.abs(counts - n * exact).max() < 500, (counts / n, exact)


def test_each_decision_logs_its_lead_probability_list_and_perturbation(tmp_path: Path) -> None:
    clock = FakeClock()
    population = SyntheticPopulation(seed=5)
    with Loop.open(
        tmp_path,
        start=False,
        clock=clock,
        exp_unit_seconds=1.0,
        seed=5,
        learner="drn",
        drn=INTERLEAVE,
    ) as lp:
        _play(lp, clock, population, 400)
        served = lp.served.slot.current.policy
        assert isinstance(served, InterleavingDRNPolicy)
        d = lp.rank(population.context(), population.actions(), event_id="probe")
    assert d.exploration is not None and d.exploration["list"] in ("greedy", "perturbed")
    seed = d.exploration["perturbation"]
    assert isinstance(seed, int)
    # the same two rankings again, from the served weights and the logged seed
    request = served._encoder.request(d.context, list(d.actions), 0, 0.0)
    state = torch.as_tensor(request.user_features, dtype=torch.float32)[None]
    pairs = torch.as_tensor(request.item_features, dtype=torch.float32)[None]
    twin = perturbed_copy(served._q, served.spec.config.alpha, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        greedy = torch.argsort(served._q(state, pairs)[0], descending=True).tolist()
        explore = torch.argsort(twin(state, pairs)[0], descending=True).tolist()
    exact = lead_probabilities(greedy, explore, served.spec.config.interleave_tau)
    # the draw's scores (the Decider ranks the rest by them) order as scores() does
    drawn = served.draw(d.context, list(d.actions), 0.3)
    assert np.argsort(-drawn.scores).tolist() == greedy
    assert np.argsort(-served.scores(d.context, list(d.actions))).tolist() == greedy
    assert d.probability == pytest.approx(exact[d.chosen_index])
    assert d.action_probabilities() == pytest.approx(exact.tolist())


def _decision(explored: bool, seed: int) -> Decision:
    population = SyntheticPopulation(seed=1)
    actions = tuple(to_action(a, i) for i, a in enumerate(population.actions()))
    return Decision(
        event_id="e1", loop="t", timestamp=1.0, context=population.context(), actions=actions,
        ranking=tuple(a.id for a in actions), probabilities=(1.0,) + (0.0,) * (len(actions) - 1),
        chosen=actions[0].id, chosen_index=0, probability=1.0, model_version="1", policy="drn",
        exploration={"list": "perturbed" if explored else "greedy", "perturbation": seed},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("explored", "reward", "moves"), [(True, 1.0, True), (True, 0.0, False), (False, 1.0, False)]
)
def test_the_learner_moves_towards_the_perturbation_that_won(explored, reward, moves) -> None:
    learner = DRNLearner(DRNSpec.from_params({**INTERLEAVE, "major_every": 10**6}))
    q = learner.agent.q
    before = {k: v.clone() for k, v in q.state_dict().items()}
    winner = perturbed_copy(q, learner.spec.config.alpha, torch.Generator().manual_seed(1234))
    expected = perturbed_copy(q, 0.0, torch.Generator())  # a copy of W
    move_towards(expected, winner, learner.spec.config.eta)
    learner.learn_one(JoinedExample(_decision(explored, 1234), reward, 1, False, 2.0))
    after = q.state_dict()
    if moves:
        for name, value in expected.named_parameters():
            assert torch.allclose(after[name], value), name
        assert learner.stats["explore_wins"] == 1
    else:
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert learner.stats["explore_wins"] == 0
    assert learner.stats["comparisons"] == 1


def test_interleaving_drn_learns_the_planted_preference_in_the_loop(tmp_path: Path) -> None:
    clock = FakeClock()
    population = SyntheticPopulation(seed=3)
    with Loop.open(
        tmp_path,
        start=False,
        clock=clock,
        exp_unit_seconds=1.0,
        seed=3,
        learner="drn",
        drn=INTERLEAVE,
    ) as lp:
        share = _play(lp, clock, population, 5000)
        learner = lp.pipeline.learner
        assert isinstance(learner, DRNLearner) and isinstance(
            lp.served.slot.current.policy, InterleavingDRNPolicy
        )
        assert learner.stats["explore_wins"] > 0 and learner.stats["comparisons"] >= 4000
    assert share >= 0.9, share


def test_an_unknown_exploration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="exploration"):
        Loop.open(tmp_path, start=False, learner="drn", drn={"exploration": "thompson"})
