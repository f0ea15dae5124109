"""DRN as the decision loop's learner: it learns from the joined stream (minor DBGD updates
on every decision, major replay updates on cadence), its versions are served and picked up
like VW's, a restart resumes it, and bad parameters or versions are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from recloop import Loop
from recloop.agents.dbgd import perturbed_copy
from recloop.agents.drn import DRN, DRNConfig
from recloop.agents.drn_loop import MAGIC, MAGIC_V1, DRNLearner, DRNPolicy, DRNSpec
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.core.types import Action
from recloop.features.hashing import FeatureHasher
from recloop.simulators.environment import Request
from recloop.simulators.synthetic import SyntheticPopulation

pytestmark = pytest.mark.usefixtures("one_thread")


def _play(lp: Loop, clock: FakeClock, population: SyntheticPopulation, n: int, start: int = 0):
    """n decisions; returns the share of the last 1,000 whose greedy action is the best."""
    greedy_best = []
    for i in range(start, start + n):
        ctx = population.context()
        d = lp.rank(ctx, population.actions(), event_id=f"e-{i}")
        r = population.reward(ctx, d.chosen)
        if r:
            lp.reward(d.event_id, r)
        greedy = max(zip(d.probabilities, d.ranking, strict=True))[1]
        greedy_best.append(greedy == population.best_action(ctx))
        clock.advance(0.01)
        if i % 50 == 0:
            lp.step()
    return float(np.mean(greedy_best[-1000:]))


def test_drn_learns_the_planted_preference_in_the_loop(tmp_path: Path) -> None:
    clock = FakeClock()
    population = SyntheticPopulation(seed=3)
    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, seed=3, learner="drn"
    ) as lp:
        share = _play(lp, clock, population, 5000)
        assert lp.model_version != "default" and lp.served.slot.current.label == "drn"
        learner = lp.pipeline.learner
        assert isinstance(learner, DRNLearner)
        assert share >= 0.9, share
        assert learner.stats["comparisons"] > 0
        assert learner.stats["major_updates"] >= 20


def test_a_restart_resumes_drn_from_its_newest_version(tmp_path: Path) -> None:
    clock = FakeClock()
    population = SyntheticPopulation(seed=4)
    settings = {"exp_unit_seconds": 1.0, "seed": 4, "learner": "drn"}
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        _play(lp, clock, population, 600)
        clock.advance(5.0)
        lp.step()
        lp.pipeline.checkpoint(clock.now())
        offset, learned = lp.pipeline.learner_offset, lp.pipeline.learner.examples_learned
        version = lp.models.latest()
        assert version is not None and version.meta["kind"] == "drn"
        weights = lp.pipeline.learner.agent.q.state_dict()
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as again:
        assert again.pipeline.learner_offset == offset == 600
        assert again.pipeline.learner.examples_learned == learned
        resumed = again.pipeline.learner.agent.q.state_dict()
        assert all(np.array_equal(weights[k], resumed[k]) for k in weights)
        assert again.model_version == version.version  # the server serves it
    # a VW loop on the same data does not resume from DRN's versions: it starts afresh
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as vw:
        assert vw.pipeline.learner.kind == "vw-cb" and vw.pipeline.learner_offset == 0


def test_bad_drn_parameters_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="gama"):
        Loop.open(tmp_path, start=False, learner="drn", drn={"gama": 0.3})
    with pytest.raises(InvalidInputError, match=r"drn\.major_every must be an integer"):
        Loop.open(tmp_path, start=False, learner="drn", drn={"major_every": 2.5})
    with pytest.raises(InvalidInputError, match="context_dim"):
        Loop.open(tmp_path, start=False, learner="drn", drn={"context_dim": 0})
    with pytest.raises(InvalidInputError, match=r"drn\.hidden must be in"):
        Loop.open(tmp_path, start=False, learner="drn", drn={"hidden": 10**9})


def test_a_version_declaring_a_huge_network_is_refused_before_it_is_built() -> None:
    """A version's header is input (model imports): a declared hidden size of 10^7 would
    allocate terabytes; it is refused by the same bounds as the settings."""
    learner = DRNLearner(DRNSpec.from_params({"hidden": 8, "context_dim": 8, "action_dim": 8}))
    body = learner.snapshot()[len(MAGIC) :]
    size = int.from_bytes(body[:8], "little")
    meta = json.loads(body[8 : 8 + size])["__metadata__"]
    header = json.loads(meta["header"])
    header["config"]["hidden"] = 10**7
    tensors = safetensors.torch.load(body)
    huge = MAGIC + safetensors.torch.save(tensors, metadata={"header": json.dumps(header)})
    with pytest.raises(ModelRejectedError, match="hidden must be in"):
        DRNPolicy.from_bytes(huge, "9")


def test_a_corrupt_drn_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRejectedError, match="could not be read"):
        DRNPolicy.from_bytes(MAGIC + b"not a torch file", "7")
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, learner="drn") as lp:
        good = lp.models.put(lp.pipeline.learner.snapshot(), {"kind": "drn"})
        lp.activate_model(good.version)
        bad = lp.models.put(MAGIC + b"\x00" * 64, {"kind": "drn"})
        with pytest.raises(ModelRejectedError):
            lp.activate_model(bad.version)
        assert lp.model_version == good.version  # the previous one keeps serving


def test_versions_are_safetensors_and_the_torch_save_format_still_loads(tmp_path: Path) -> None:
    import io
    import json

    learner = DRNLearner(DRNSpec.from_params({"hidden": 8}, 0))
    blob = learner.snapshot()
    assert blob.startswith(MAGIC)
    tensors = safetensors.torch.load(blob[len(MAGIC) :])
    assert {k.partition(".")[0] for k in tensors} == {"q", "target"}
    # what earlier releases wrote: MAGIC_V1 + torch.save({"header", "q", "target"})
    buffer = io.BytesIO()
    payload = {
        "header": json.dumps(learner.spec.header()),
        "q": learner.agent.q.state_dict(),
        "target": learner.agent.target.state_dict(),
    }
    torch.save(payload, buffer)
    old = MAGIC_V1 + buffer.getvalue()
    context = {"user_id": "u"}
    actions = [Action("a", {"x": 1.0}), Action("b", {"y": 2.0})]
    want = learner.scores(context, actions)
    for version in (blob, old):
        np.testing.assert_allclose(
            DRNPolicy.from_bytes(version, "1").scores(context, actions), want
        )
        resumed = DRNLearner.from_bytes(version, {"hidden": 8})
        np.testing.assert_allclose(resumed.scores(context, actions), want)


def test_hashing_is_stable_across_processes() -> None:
    features = {"user": {"age": "teen", "tags": ["a", "b"]}, "hour": 7.5, "new": True}
    here = FeatureHasher(1024).vector(features).tolist()
    code = (
        "from recloop.features.hashing import FeatureHasher;"
        f"print(FeatureHasher(1024).vector({features!r}).tolist())"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert there == str(here)  # Python's own hash() is salted per process: this is not
    vector = np.array(here)
    # user.age=teen, user.tags=a, user.tags=b, new=True (weight 1) and hour (its value)
    assert sorted(np.abs(vector[vector != 0])) == [1.0, 1.0, 1.0, 1.0, 7.5]


def _disagreeing_draw(agent: DRN, request: Request) -> int:
    """Advance the agent's generator to a perturbation whose top pick differs from W's;
    leave the generator just before it, and return that pick."""
    top = int(agent.scores(request).argmax())
    for _ in range(500):
        state = agent.gen.get_state()
        explore = agent.twins.perturb(agent.cfg.alpha, agent.gen)
        top_explore = int(agent.scores(request, explore).argmax())
        if top_explore != top:
            agent.gen.set_state(state)
            return top_explore
    raise AssertionError("no perturbation changed the top pick")


def test_logged_minor_update_moves_towards_the_network_that_picked_the_click() -> None:
    agent = DRN(3, 2, 1, DRNConfig(alpha=1.0, eta=0.05, major_every=10**6, seed=1))
    rng = np.random.default_rng(0)

    def request(user: int) -> Request:
        return Request(
            user=user,
            time=0.0,
            user_features=rng.normal(size=3),
            context=np.zeros(0),
            candidates=np.arange(4, dtype=np.int64),
            item_features=rng.normal(size=(4, 2)),
            cross_features=np.zeros((4, 0)),
        )

    def weights() -> list[torch.Tensor]:
        return [w.detach().clone() for w in agent.q.parameters()]

    # W~ would have chosen the logged, clicked item and W would not: W moves eta towards W~
    req = request(1)
    pick = _disagreeing_draw(agent, req)
    before = weights()
    probe = perturbed_copy(
        agent.q, agent.cfg.alpha, torch.Generator().set_state(agent.gen.get_state())
    )
    agent.learn_logged(req, pick, reward=1.0, probability=0.25)
    for w0, w1, w_explore in zip(before, weights(), probe.parameters(), strict=True):
        assert torch.allclose(w1, w0 + 0.05 * (w_explore - w0))
    assert agent.stats == {"explore_wins": 1, "comparisons": 1, "major_updates": 0}
    # the same without a click, or a click on W's own pick: W stays
    for reward, on_explore in [(0.0, True), (1.0, False)]:
        req = request(2 if on_explore else 3)
        pick = _disagreeing_draw(agent, req)
        chosen = pick if on_explore else int(agent.scores(req).argmax())
        before = weights()
        agent.learn_logged(req, chosen, reward=reward, probability=0.25)
        assert all(torch.equal(a, b) for a, b in zip(before, weights(), strict=True))
    assert agent.stats["explore_wins"] == 1 and agent.stats["comparisons"] == 3
