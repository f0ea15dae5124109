"""The returning-users simulator and DRN's activeness: the designed trade-off (clickbait wins
clicks now, loses visits later), reproducibility, the interface's checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recloop.features.activeness import Activeness
from recloop.simulators.returning_users import ReturningUsers, ReturningUsersConfig


def test_activeness_decays_with_a_constant_hazard_and_returns_add_to_it():
    a = Activeness(start=0.5, return_boost=0.32, decay_per_second=1.2e-5)
    half_life = math.log(2) / 1.2e-5
    assert a.decayed(0.8, half_life) == pytest.approx(0.4)
    assert a.decayed(0.8, -5.0) == 0.8  # no negative elapsed time
    assert a.after_return(0.5, 0.0) == pytest.approx(0.82)
    assert a.after_return(0.9, 0.0) == 1.0  # capped
    assert a.after_return(0.6, half_life) == pytest.approx(0.3 + 0.32)


def episode(env, policy, seed):
    rng = np.random.default_rng(seed)
    req = env.reset(seed)
    while req is not None:
        _, req = env.step(policy(env, req, rng))
    return dict(env.totals)


def clickbait_first(env, req, rng):
    return np.argsort(-req.item_features[:, env.config.n_categories])


def quality_first(env, req, rng):
    return np.argsort(req.item_features[:, env.config.n_categories])


def test_clickbait_wins_clicks_per_visit_and_loses_visits():
    env = ReturningUsers(ReturningUsersConfig(n_users=150, horizon_days=30))
    bait = episode(env, clickbait_first, 0)
    good = episode(env, quality_first, 0)
    assert bait["clicks"] / bait["visits"] > 1.15 * good["clicks"] / good["visits"]
    assert good["visits"] > 1.5 * bait["visits"]
    assert good["clicks"] > bait["clicks"]  # over the month, quality wins the clicks too


def test_episodes_are_reproducible_and_the_interface_checks_its_input():
    env = ReturningUsers(ReturningUsersConfig(n_users=50, horizon_days=5))
    first = episode(env, lambda e, r, rng: rng.permutation(len(r.candidates)), 3)
    again = episode(env, lambda e, r, rng: rng.permutation(len(r.candidates)), 3)
    assert first == again and first["visits"] > 50
    req = env.reset(1)
    assert req.item_features.shape == (20, 10) and req.cross_features.shape == (20, 1)
    assert req.user_features.shape == (11,) and req.context.shape == (2,)
    with pytest.raises(ValueError, match="at least 5 distinct"):
        env.step([0, 1, 2])
    with pytest.raises(ValueError, match="at least 5 distinct"):
        env.step([0, 0, 1, 2, 3])
    feedback, nxt = env.step(list(range(20)))
    assert list(feedback.shown) == list(req.candidates[:5])
    assert set(feedback.clicks) <= {0.0, 1.0} and np.all(feedback.purchases <= feedback.clicks)
    assert nxt is not None and nxt.time >= req.time


def test_tastes_shift_only_when_asked_and_reproducibly():
    def tastes_after(cfg, seed):
        env = ReturningUsers(cfg)
        episode(env, lambda e, r, rng: list(range(e.slate_size)), seed)
        return np.stack([u.taste for u in env._users])

    def start(cfg, seed):
        env = ReturningUsers(cfg)
        env.reset(seed)
        return np.stack([u.taste for u in env._users])

    fixed = ReturningUsersConfig(n_users=40, horizon_days=20)
    assert np.array_equal(tastes_after(fixed, 1), start(fixed, 1))
    shifting = ReturningUsersConfig(n_users=40, horizon_days=20, taste_shift_days=3.0)
    after = tastes_after(shifting, 1)
    changed = (np.abs(after - start(shifting, 1)).sum(1) > 1e-9).mean()
    assert changed > 0.8  # 20 days at one shift per 3 days: nearly every user has moved on
    assert np.array_equal(after, tastes_after(shifting, 1))
