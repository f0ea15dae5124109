"""Every online learner the pipeline can run, through one suite: VW (the default), DRN and
the score-fusion DDPG.

Each is built as the pipeline builds it (its kind's ``new`` / ``resume`` in
``recloop.kinds.models``, from ``LoopSettings``) and fed real ``JoinedExample``s (48:
repeat and anonymous users, excluded actions, logged probabilities, rewards in [-1, 1]).
Checks per learner: its ``kind`` is the settings' and survives a resume; an untrained
learner's snapshot already serves (what a model reset stores); a snapshot loaded as the
serving policy (``load_model_policy``, as servers load versions) scores what the learner
and a learner resumed from it score, and exactly what that resumed learner's own snapshot
serves; a resumed learner goes on learning (counts its examples, its scores move, its next
snapshot serves them, the learner it came from is untouched); resuming is lossless where
the learner promises it (VW; DRN restarts its replay memory and exploration draws by
design, so that case is skipped); and another kind's version, a truncated one or junk is
refused with ``ModelRejectedError`` by both the resume and the serving load (the pipeline
relies on that to skip to an older version).

36 cases: 5 checks x 3 learners (DRN's and fusion's lossless resume skipped) and 7 bad
versions x 3 learners (two of VW's truncated versions xfail(strict): a known defect);
about 2.5 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from recloop.core.errors import ModelRejectedError
from recloop.core.protocols import OnlineLearner
from recloop.core.types import Action, Decision, JoinedExample
from recloop.kinds.models import learner_kind, load_model_policy
from recloop.settings import LoopSettings


def new_learner(settings: LoopSettings) -> OnlineLearner:
    return learner_kind(settings).new(settings)


def resume_learner(settings: LoopSettings, blob: bytes) -> OnlineLearner:
    return learner_kind(settings).resume(settings, blob)


PREDICTIONS = {"click": 0.1, "pay": 0.2, "phi": 0.3}
"""What the fusion DDPG ranks by (the other learners take them as plain features)."""
ACTIONS = [
    Action(f"a{j}", {"topic": f"t{j % 3}", "price": float(j), "click": 0.1 * (j + 1),
                     "pay": 0.1 * (5 - j), "phi": 0.1 * j})
    for j in range(5)
]  # fmt: skip
TINY_DRN = {
    "context_dim": 8,
    "action_dim": 8,
    "hidden": 8,
    "major_every": 10,  # major (replay) updates within a few dozen examples
    "major_steps": 2,
    "batch_size": 8,
}
TINY_FUSION = {
    "context_dim": 8,
    "hidden": 8,
    "batch_size": 8,
    "train_every": 4,  # trains within a few dozen examples
    "train_steps": 2,
    "actor_delay": 0,
}
SETTINGS = {
    "vw": LoopSettings(seed=3),
    "drn": LoopSettings(learner="drn", seed=3, drn=TINY_DRN),
    "fusion": LoopSettings(learner="fusion", seed=3, fusion=TINY_FUSION),
}
REQUESTS: list[tuple[dict[str, Any], list[Action]]] = [
    ({"user_id": "u1", "x": 1.0}, ACTIONS),
    ({"user_id": "u2", "x": 4.0}, ACTIONS[::-1]),
    ({"x": 0.5}, ACTIONS[:2]),
    ({"user_id": "someone new"}, [Action("new", {"colour": "red", **PREDICTIONS}), ACTIONS[2]]),
]
"""What the learner and the policies are asked to score after learning."""


def _example(i: int) -> JoinedExample:
    """Action a2 pays off for everyone; a few decisions exclude an action; every fifth has
    no user (a one-step episode for DRN); the logger was epsilon-greedy on the first."""
    excluded = ("a4",) if i % 6 == 0 else ()
    offered = [a for a in ACTIONS if a.id not in excluded]
    explore = 0.2 / (len(offered) - 1)
    probability_of = {a.id: 0.8 if k == 0 else explore for k, a in enumerate(offered)}
    chosen = offered[(i * 7 + 3) % len(offered)]
    ranking = (chosen.id, *(a.id for a in offered if a != chosen))
    context: dict[str, Any] = {"x": float(i % 5)}
    if i % 5:
        context["user_id"] = f"u{i % 4}"
    d = Decision(
        event_id=f"e{i}",
        loop="t",
        timestamp=10.0 * i,
        context=context,
        actions=tuple(ACTIONS),
        ranking=ranking + excluded,
        probabilities=tuple(probability_of[a] for a in ranking) + (0.0,) * len(excluded),
        chosen=chosen.id,
        chosen_index=ACTIONS.index(chosen),
        probability=probability_of[chosen.id],
        model_version="default",
        policy="default",
        excluded=excluded,
        exploration={"weight": 0.5 + 0.3 * (i % 7), "density": 0.4},  # fusion's; others ignore it
    )
    reward = 1.0 if chosen.id == "a2" else (-0.5 if i % 9 == 0 else 0.0)
    return JoinedExample(d, reward, 1, False, 10.0 * i + 5.0)


FIRST = [_example(i) for i in range(48)]
MORE = [_example(i) for i in range(48, 96)]


@dataclass
class Trained:
    settings: LoopSettings
    learner: OnlineLearner
    blob: bytes


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Seeded DRN learning repeats exactly on one thread (see conftest's one_thread)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def trained(request: pytest.FixtureRequest) -> Iterator[Trained]:
    """A learner as the pipeline starts it, after the first examples; and its snapshot."""
    if request.param != "vw":
        pytest.importorskip("torch", reason="DRN and the fusion DDPG need PyTorch")
    settings = SETTINGS[request.param]
    learner = new_learner(settings)
    for example in FIRST:
        learner.learn_one(example)
    yield Trained(settings, learner, learner.snapshot())
    learner.close()


def _scores(scorer: Any) -> list[np.ndarray]:
    out = []
    for context, actions in REQUESTS:
        scores = np.asarray(scorer.scores(context, actions), dtype=np.float64)
        assert scores.shape == (len(actions),) and np.isfinite(scores).all(), scores
        out.append(scores)
    return out


def _assert_same(got: list[np.ndarray], want: list[np.ndarray], exact: bool = True) -> None:
    for g, w in zip(got, want, strict=True):
        if exact:
            np.testing.assert_array_equal(g, w)
        else:  # another code path through the same weights (float32 networks)
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9)


def _moved(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return any(np.max(np.abs(x - y)) > 1e-6 for x, y in zip(a, b, strict=True))


def test_the_kind_is_the_settings_and_survives_a_resume(trained: Trained) -> None:
    kind = learner_kind(trained.settings).meta_kind
    assert trained.learner.kind == kind
    assert isinstance(trained.learner.args, str) and trained.learner.args
    assert trained.learner.examples_learned == len(FIRST)
    resumed = resume_learner(trained.settings, trained.blob)
    assert resumed.kind == kind and resumed.args == trained.learner.args
    resumed.close()


def test_an_untrained_snapshot_already_serves(trained: Trained) -> None:
    fresh = new_learner(trained.settings)
    policy = load_model_policy(fresh.snapshot(), "1")
    _assert_same(_scores(policy), _scores(fresh), exact=False)
    fresh.close()


def test_the_served_snapshot_scores_what_the_learner_and_a_resumed_learner_score(
    trained: Trained,
) -> None:
    served = load_model_policy(trained.blob, "7")
    want = _scores(served)
    _assert_same(want, _scores(trained.learner), exact=False)
    resumed = resume_learner(trained.settings, trained.blob)
    _assert_same(_scores(resumed), want, exact=False)
    again = load_model_policy(resumed.snapshot(), "8")  # a resumed learner's next version
    _assert_same(_scores(again), want)
    fresh = new_learner(trained.settings)  # and the examples made a difference to serve
    assert _moved(want, _scores(load_model_policy(fresh.snapshot(), "0")))
    fresh.close()
    resumed.close()


def test_a_resumed_learner_goes_on_learning(trained: Trained) -> None:
    resumed = resume_learner(trained.settings, trained.blob)
    before = _scores(resumed)
    learned = resumed.examples_learned
    for example in MORE:
        resumed.learn_one(example)
    assert resumed.examples_learned == learned + len(MORE)
    after = _scores(resumed)
    assert _moved(before, after), "the resumed learner's scores did not move"
    _assert_same(_scores(load_model_policy(resumed.snapshot(), "9")), after, exact=False)
    # the learner it was resumed from shares no weights with it
    _assert_same(_scores(trained.learner), before, exact=False)
    resumed.close()


def test_resuming_is_lossless_where_promised(trained: Trained) -> None:
    if trained.settings.learner != "vw":
        pytest.skip(
            "DRN and the fusion DDPG resume their networks only: the replay memory starts "
            "empty again and the draws restart from the seed (agents/drn_loop.py, "
            "agents/fusion_loop.py), by design"
        )
    original = new_learner(trained.settings)
    for example in FIRST:
        original.learn_one(example)
    resumed = resume_learner(trained.settings, original.snapshot())
    for example in MORE:
        original.learn_one(example)
        resumed.learn_one(example)
    _assert_same(_scores(resumed), _scores(original))
    original.close()
    resumed.close()


def _other_kind_blob(settings: LoopSettings) -> bytes:
    other = "drn" if settings.learner == "vw" else "vw"
    if other == "drn":
        pytest.importorskip("torch", reason="DRN needs PyTorch")
    learner = new_learner(SETTINGS[other])
    try:
        return learner.snapshot()
    finally:
        learner.close()


TRUNCATED_VW = pytest.mark.xfail(
    strict=True,
    reason="defect: a VW model cut anywhere after its header (~185 bytes) loads, with the "
    "missing weights as zeros (workspace_from_bytes cannot tell; VW's format has no length "
    "or checksum). The loop checks a stored version's sha256 first; model files (the "
    "personalizer import, --policy FILE) have no digest to check",
)
BAD_VERSIONS = ["other-kind", "empty", "junk", "cut-8", "cut-64", "cut-half", "cut-last-byte"]


def _bad(case: str, trained: Trained) -> bytes:
    blob = trained.blob
    cuts = {"cut-8": 8, "cut-64": 64, "cut-half": len(blob) // 2, "cut-last-byte": len(blob) - 1}
    if case in cuts:
        return blob[: cuts[case]]
    if case == "other-kind":
        return _other_kind_blob(trained.settings)
    return {"empty": b"", "junk": b"junk" * 64}[case]


@pytest.mark.parametrize(
    ("trained", "case"),
    [
        pytest.param(kind, case, marks=TRUNCATED_VW)
        if kind == "vw" and case in ("cut-half", "cut-last-byte")
        else (kind, case)
        for kind in sorted(SETTINGS)
        for case in BAD_VERSIONS
    ],
    indirect=["trained"],
)
def test_another_kinds_truncated_or_junk_versions_are_refused(trained: Trained, case: str) -> None:
    version = _bad(case, trained)
    with pytest.raises(ModelRejectedError):
        resume_learner(trained.settings, version).close()
    if case != "other-kind":  # another kind's version is served, by its own policy
        with pytest.raises(ModelRejectedError):
            load_model_policy(version, "x")
