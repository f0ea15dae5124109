"""Off-policy estimators: hand-computed values on a tiny log, properties, unbiasedness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.core.errors import InvalidInputError
from recloop.evaluation.estimators import evaluate, make_estimator
from recloop.evaluation.logdata import BanditData
from recloop.evaluation.offpolicy import DM, DR, IIPS, IPS, SNDR, SNIPS, prepare
from recloop.evaluation.synthetic import Evaluation, SyntheticBandit
from recloop.evaluation.terms import Terms, TermSums
from recloop.evaluation.tuned_dr import DROS, SwitchDR

# A 4-row, 2-action log computed by hand:
#   w = pi(a_i)/p_i = [2, 1, 0, 3.75]; w r = [2, 0, 0, 3.75]
#   dm_i = [0.8, 0.5, 0.5, 0.7]; residual r - q(a_i) = [0.2, -0.4, 0.5, 0.1]
TINY = BanditData(
    action=np.array([0, 1, 0, 1]),
    reward=np.array([1.0, 0.0, 1.0, 1.0]),
    pscore=np.array([0.5, 0.5, 0.8, 0.2]),
    n_actions=2,
)
PI = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.25, 0.75]])
Q = np.array([[0.8, 0.2], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]])


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (DM(), 2.5 / 4),
        (IPS(), 5.75 / 4),
        (SNIPS(), 5.75 / 6.75),
        (DR(), 0.625 + 0.375 / 4),
        (SNDR(), 0.625 + 0.375 / 6.75),
        (SwitchDR(tau=2.0), 0.625 + (0.4 - 0.4 + 0.0) / 4),  # row 3 (w=3.75) falls back to DM
        (DROS(lam=1.0), 0.625 + (0.4 * 0.2 - 0.5 * 0.4 + (3.75 / 15.0625) * 0.1) / 4),
        (IPS(clip=2.0), (2.0 + 0.0 + 0.0 + 2.0) / 4),
        (DR(clip=2.0), 0.625 + (0.4 - 0.4 + 0.0 + 2.0 * 0.1) / 4),
        (IIPS(), 5.75 / 4),  # no positions: IIPS is IPS
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_hand_computed_values(estimator, expected):
    assert estimator.estimate(TINY, PI, Q) == pytest.approx(expected, abs=1e-12)


def test_independent_position_ips_sums_per_slot_means():
    data = BanditData(
        action=TINY.action,
        reward=TINY.reward,
        pscore=TINY.pscore,
        n_actions=2,
        position=np.array([0, 0, 0, 1]),
    )
    dist = np.repeat(PI[:, :, None], 2, axis=2)  # the same probabilities in both slots
    # slot 0: mean(w r) over rows 0-2 = 2/3; slot 1: row 3 = 3.75
    assert IIPS().estimate(data, dist) == pytest.approx(2 / 3 + 3.75)
    # position as context: per-row IPS is unchanged
    assert IPS().estimate(data, dist) == pytest.approx(5.75 / 4)


def test_positions_select_the_logged_slot():
    data = BanditData(
        action=np.array([0, 1]),
        reward=np.array([1.0, 1.0]),
        pscore=np.array([0.5, 0.5]),
        n_actions=2,
        position=np.array([1, 0]),
    )
    dist = np.zeros((2, 2, 2))
    dist[:, 0, 0] = dist[:, 1, 1] = 1.0  # action 0 in slot 0, action 1 in slot 1
    # row 0 logged action 0 at slot 1 (policy puts action 1 there): w = 0
    # row 1 logged action 1 at slot 0 (policy puts action 0 there): w = 0
    assert IPS().estimate(data, dist) == 0.0
    dist2 = dist[:, ::-1, :].copy()  # swap: now both logged placements match
    assert IPS().estimate(data, dist2) == pytest.approx(2.0)


def test_reward_model_required_and_policy_validated():
    with pytest.raises(InvalidInputError, match="needs estimated_rewards"):
        DR().estimate(TINY, PI)
    with pytest.raises(InvalidInputError, match="sum to 1"):
        IPS().estimate(TINY, PI * 0.5)
    with pytest.raises(InvalidInputError, match="shape"):
        IPS().estimate(TINY, PI[:3])
    with pytest.raises(InvalidInputError, match="propensities"):
        BanditData(
            action=np.array([0]), reward=np.array([1.0]), pscore=np.array([0.0]), n_actions=1
        )
    with pytest.raises(InvalidInputError, match="finite"):
        BanditData(
            action=np.array([0]), reward=np.array([math.nan]), pscore=np.array([0.5]), n_actions=1
        )
    with pytest.raises(InvalidInputError, match="unknown estimator"):
        make_estimator("magic")


def _log_with_weights(weights, rewards):
    """A 2-action log whose importance weights for 'always the logged action' are given."""
    w = np.asarray(weights, dtype=float)
    p = np.full(len(w), 1.0 / (w.max() + 1.0))
    pi_logged = w * p
    dist = np.column_stack([pi_logged, 1.0 - pi_logged])
    data = BanditData(
        action=np.zeros(len(w), dtype=np.int64),
        reward=np.asarray(rewards, dtype=float),
        pscore=p,
        n_actions=2,
    )
    return data, dist


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 20.0), min_size=2, max_size=40).filter(lambda w: sum(w) > 1e-3),
    st.data(),
)
def test_snips_equals_ips_when_weights_average_one(raw, data_strategy):
    w = np.asarray(raw) / np.mean(raw)
    rewards = data_strategy.draw(st.lists(st.floats(-5.0, 5.0), min_size=len(w), max_size=len(w)))
    data, dist = _log_with_weights(w, rewards)
    assert SNIPS().estimate(data, dist) == pytest.approx(IPS().estimate(data, dist), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 30), st.integers(0, 10_000))
def test_doubly_robust_family_equals_dm_when_weights_are_zero(n, seed):
    rng = np.random.default_rng(seed)
    data = BanditData(
        action=np.zeros(n, dtype=np.int64),
        reward=rng.random(n),
        pscore=rng.uniform(0.05, 1.0, n),
        n_actions=2,
    )
    dist = np.tile([0.0, 1.0], (n, 1))  # never the logged action: every weight is 0
    q = rng.random((n, 2))
    dm = DM().estimate(data, dist, q)
    for est in (DR(), DR(clip=1.0), SwitchDR(tau=1.0), SwitchDR(), DROS(lam=1.0), DROS()):
        assert est.estimate(data, dist, q) == pytest.approx(dm, abs=1e-12), est.label()


def test_online_and_offline_sums_agree():
    """The online evaluators add rows one at a time; offline sums arrays. Same numbers."""
    rng = np.random.default_rng(5)
    w, r = rng.exponential(size=500), rng.random(500)
    offline = TermSums.of(Terms(a=0.0, u=w * r, v=w), 500, w)
    online = TermSums()
    for wi, ri in zip(w, r, strict=True):
        online.add(0.0, wi * ri, wi, wi)
    assert online.value() == pytest.approx(offline.value(), rel=1e-12)
    assert online.std_error() == pytest.approx(offline.std_error(), rel=1e-9)
    assert online.effective_sample_size() == pytest.approx(offline.effective_sample_size())


def test_bootstrap_and_normal_intervals_agree_on_a_large_log():
    world = SyntheticBandit(seed=1, logging_beta=0.5)
    data, q = world.log(20_000)
    dist = Evaluation().probabilities(data.context, q)
    normal = IPS().interval(data, dist, n_bootstrap=0)
    boot = IPS().interval(data, dist, n_bootstrap=300, seed=1)
    assert boot.value == normal.value
    width = normal.high - normal.low
    assert abs(boot.low - normal.low) < 0.15 * width
    assert abs(boot.high - normal.high) < 0.15 * width


def test_estimators_are_unbiased_over_seeded_logs():
    """IPS, DR (with the true q shifted, i.e. a wrong model) and Switch-DR with an infinite
    threshold average to the true value over many logs; SNIPS's bias is small."""
    world = SyntheticBandit(seed=3, n_actions=5, logging_beta=1.0)
    policy = Evaluation(beta=3.0)
    truth = world.true_value(policy, n=400_000)
    seeds = 200
    results: dict[str, list[float]] = {"ips": [], "dr": [], "snips": []}
    for s in range(seeds):
        data, q = world.log(500, stream=s)
        dist = policy.probabilities(data.context, q)
        wrong_q = np.clip(q + 0.2, 0.0, 1.0)  # a biased reward model
        results["ips"].append(IPS().estimate(data, dist))
        results["snips"].append(SNIPS().estimate(data, dist))
        results["dr"].append(DR().estimate(data, dist, wrong_q))
    for name, values in results.items():
        v = np.asarray(values)
        sem = v.std(ddof=1) / math.sqrt(seeds)
        assert abs(v.mean() - truth) < 4 * sem + 0.002, (name, v.mean(), truth, sem)


def test_normal_intervals_cover_the_truth():
    world = SyntheticBandit(seed=4, n_actions=5, logging_beta=1.0)
    policy = Evaluation(beta=3.0)
    truth = world.true_value(policy, n=400_000)
    hits = {"ips": 0, "snips": 0, "dr": 0}
    runs = 100
    for s in range(runs):
        data, q = world.log(2_000, stream=s)
        dist = policy.probabilities(data.context, q)
        rows, _ = evaluate(data, dist, [IPS(), SNIPS(), DR()], np.clip(q + 0.1, 0, 1))
        for row in rows:
            hits[row.name] += row.interval.low <= truth <= row.interval.high
    for name, h in hits.items():
        assert h / runs >= 0.88, (name, h)


def test_prepare_weights_and_overlap_report():
    p = prepare(TINY, PI, Q)
    np.testing.assert_allclose(p.weight, [2.0, 1.0, 0.0, 3.75])
    _, ov = evaluate(TINY, PI, [IPS()])
    assert ov.effective_sample_size == pytest.approx(6.75**2 / (4 + 1 + 0 + 3.75**2))
    assert ov.max_weight == 3.75
    assert any("overlap" in w or "weight" in w for w in ov.warnings(min_ess_ratio=0.9))


@pytest.mark.parametrize("model", ["ridge", "hgb", "logistic", "hgb-classifier"])
def test_cross_fitted_reward_models_make_dr_accurate(model):
    """Every reward model kind, cross-fitted: q in a sane range, and DM/DR near the truth."""
    from recloop.evaluation.reward_model import cross_fit_rewards

    world = SyntheticBandit(seed=8, n_actions=4, dim=3, logging_beta=0.0)
    policy = Evaluation(beta=4.0)
    truth = world.true_value(policy, n=300_000)
    data, q_true = world.log(4_000)
    dist = policy.probabilities(data.context, q_true)
    q = cross_fit_rewards(data, model=model, n_folds=3, seed=0)
    assert q.shape == (4_000, 4)
    if model in ("logistic", "hgb-classifier"):
        assert q.min() >= 0.0 and q.max() <= 1.0
    assert np.corrcoef(q.ravel(), q_true.ravel())[0, 1] > 0.8
    dr = DR().interval(data, dist, q, n_bootstrap=0)
    assert dr.low <= truth <= dr.high
    assert abs(DM().estimate(data, dist, q) - truth) < 0.05
