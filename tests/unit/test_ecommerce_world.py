"""The synthetic e-commerce world: a ground truth to learn and evaluate against."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.simulators.ecommerce import RESPONSES, EcommerceConfig, EcommerceWorld


def test_logs_are_reproducible_and_in_time_order():
    cfg = EcommerceConfig(n_users=200, n_items=100, seed=3)
    a, b = EcommerceWorld(cfg).generate(5000), EcommerceWorld(cfg).generate(5000)
    assert len(a) >= 5000
    for name in ("user", "session", "item", "response", "reward", "propensity", "timestamp"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert np.all(np.diff(a.timestamp) >= 0)
    assert set(a.behaviours()) <= set(RESPONSES)
    assert np.all((a.propensity > 0) & (a.propensity <= 1))


def test_logged_propensities_are_the_logging_policy_and_it_is_popularity_biased():
    """With no relevance term the logger is the same for everyone: the logged propensity of
    each shown item must be exactly its probability, and shows follow it."""
    cfg = EcommerceConfig(n_users=300, n_items=50, logging_relevance=0.0, seed=1)
    world = EcommerceWorld(cfg)
    log = world.generate(60_000)
    probs = world.logging_policy(world.initial_tastes[:1])[0]
    np.testing.assert_allclose(log.propensity, probs[log.item], rtol=1e-12)
    shown = np.bincount(log.item, minlength=50) / len(log)
    assert np.abs(shown - probs).max() < 0.01
    assert np.corrcoef(probs, world.item_popularity)[0, 1] > 0.9


def test_response_model_and_room_to_learn():
    world = EcommerceWorld(EcommerceConfig(n_users=500, n_items=300, seed=2))
    p = world.response_probabilities(np.linspace(-4, 6, 50))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(p >= 0)
    assert np.all(np.diff(p[:, 0]) < 0)  # more affinity, fewer skips
    er = world.expected_reward(world.initial_tastes)
    oracle = er.max(axis=1).mean()
    logging = (world.logging_policy(world.initial_tastes) * er).sum(axis=1).mean()
    uniform = er.mean()
    assert oracle > 1.5 * logging > 1.5 * uniform  # a biased logger, beatable by far


def test_interactive_responses_follow_the_model():
    world = EcommerceWorld(EcommerceConfig(n_users=10, n_items=20, seed=4))
    taste = world.initial_tastes[0]
    er = world.expected_reward(taste[None, :])[0]
    best, worst = int(er.argmax()), int(er.argmin())
    rng = np.random.default_rng(0)
    mean_best = np.mean([world.respond(taste, best, rng)[1] for _ in range(3000)])
    mean_worst = np.mean([world.respond(taste, worst, rng)[1] for _ in range(3000)])
    assert mean_best == pytest.approx(er[best], abs=0.1)
    assert mean_worst == pytest.approx(er[worst], abs=0.1)


def test_interactive_evaluation_orders_random_popularity_and_oracle():
    from recloop.simulators.ecommerce import (
        interactive_returns,
        oracle_recommender,
        popularity_recommender,
        random_recommender,
    )

    cfg = EcommerceConfig(n_users=300, n_items=200, seed=6)
    world = EcommerceWorld(cfg)
    log = world.generate(20_000)
    engaged = np.bincount(log.item, weights=log.reward, minlength=cfg.n_items)
    returns = {
        name: interactive_returns(world, rec, sessions=300, seed=1)
        for name, rec in {
            "random": random_recommender(cfg.n_items),
            "popularity": popularity_recommender(engaged),
            "oracle": oracle_recommender(world),
        }.items()
    }
    means = {k: v.mean() for k, v in returns.items()}
    assert means["random"] < means["popularity"] < means["oracle"], means
    # reproducible from the seed
    again = interactive_returns(world, oracle_recommender(world), sessions=300, seed=1)
    np.testing.assert_array_equal(again, returns["oracle"])
