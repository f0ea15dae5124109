"""DDPG: the mathematics (soft target updates, the TD target, the actor's bounded output in
item space, the TD3+BC actor loss, exploration noise), that it exports, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from recloop.agents.datasets import build_trajectories, split_by_time  # noqa: E402
from recloop.agents.ddpg import (  # noqa: E402
    DDPG,
    Actor,
    Batch,
    DDPGConfig,
    DDPGNetworks,
    actor_loss,
    clip_to_ball,
    critic_loss,
    into_ball,
    normalise_items,
    soft_update,
    td_target,
)
from recloop.agents.embeddings import Embeddings  # noqa: E402
from recloop.agents.networks import StateEncoder  # noqa: E402
from recloop.agents.noise import GaussianNoise, OrnsteinUhlenbeckNoise  # noqa: E402
from recloop.simulators.ecommerce import (  # noqa: E402
    EcommerceConfig,
    EcommerceWorld,
    from_ecommerce,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small_agent(cfg=None):
    world_cfg = EcommerceConfig(n_users=60, n_items=30, seed=5)
    world = EcommerceWorld(world_cfg)
    log = from_ecommerce(world.generate(4_000), world_cfg.n_users, world_cfg.n_items)
    data = build_trajectories(log, last_n=5)
    agent = DDPG(
        60, 30, cfg or DDPGConfig(hidden=16, epochs=1, embedding_dim=8, embedding_epochs=2)
    )
    agent.fit(data)
    return agent, log, data


def random_batch(n_users=4, n_items=6, dim=3, rows=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        user=torch.randint(n_users, (rows,), generator=g),
        history=torch.randint(n_items + 1, (rows, 2), generator=g),
        action=into_ball(torch.randn(rows, dim, generator=g)),
        reward=torch.rand(rows, generator=g) * 3,
        next_history=torch.randint(n_items + 1, (rows, 2), generator=g),
        done=torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])[:rows],
        engaged=torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])[:rows],
    )


# -- soft target updates and the TD target -------------------------------------------------


def test_soft_update_moves_each_target_parameter_tau_of_the_way():
    source, target = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        source.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        source.bias.copy_(torch.tensor([10.0, -10.0]))
        target.weight.zero_()
        target.bias.copy_(torch.tensor([2.0, 2.0]))
    soft_update(target, source, tau=0.1)
    torch.testing.assert_close(target.weight, torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    torch.testing.assert_close(target.bias, torch.tensor([0.1 * 10 + 0.9 * 2, 0.1 * -10 + 0.9 * 2]))
    soft_update(target, source, tau=0.1)  # twice: (1 - tau)^2 of the gap is left
    torch.testing.assert_close(target.weight, (1 - 0.9**2) * source.weight)
    soft_update(target, source, tau=1.0)  # tau = 1 copies
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        assert torch.equal(t, s)
    assert not any(p.grad is not None for p in target.parameters())


def test_td_target_bootstraps_only_where_the_session_goes_on():
    reward = torch.tensor([1.0, 2.0, 0.0, 3.0])
    done = torch.tensor([False, True, False, True])
    next_q = torch.tensor([10.0, 10.0, -4.0, 7.0])
    torch.testing.assert_close(
        td_target(reward, done, next_q, gamma=0.5), torch.tensor([6.0, 2.0, -2.0, 3.0])
    )
    torch.testing.assert_close(td_target(reward, done.float(), next_q, 0.0), reward)


def test_the_critic_regresses_on_the_target_networks_not_the_online_ones():
    torch.manual_seed(0)
    cfg = DDPGConfig(hidden=8, embedding_dim=3, gamma=0.9)
    nets = DDPGNetworks(n_users=4, n_items=6, dim=3, hidden=8)
    with torch.no_grad():  # the online networks move away from their targets
        for p in [*nets.actor.parameters(), *nets.critic.parameters()]:
            p.add_(torch.randn_like(p))
    batch = random_batch()
    with torch.no_grad():
        a2 = nets.actor_target(batch.user, batch.next_history)
        q2 = nets.critic_target(batch.user, batch.next_history, a2)
        want_target = batch.reward + 0.9 * (1 - batch.done) * q2
        q = nets.critic(batch.user, batch.history, batch.action)
    torch.testing.assert_close(
        critic_loss(nets, batch, cfg.gamma), F.mse_loss(q, want_target), rtol=1e-6, atol=1e-6
    )
    loss = critic_loss(nets, batch, cfg.gamma)
    loss.backward()
    assert all(p.grad is None for p in nets.critic_target.parameters())
    assert all(p.grad is None for p in nets.actor_target.parameters())
    assert all(p.grad is None for p in nets.actor.parameters())  # the critic's step only


# -- the actor and its action space --------------------------------------------------------


def test_the_actor_outputs_a_point_of_the_item_spaces_unit_ball():
    torch.manual_seed(0)
    actor = Actor(StateEncoder(n_users=5, n_items=7, embedding_dim=4, hidden=8), action_dim=4)
    with torch.no_grad():  # however large its pre-activations, the output stays in the ball
        for p in actor.parameters():
            p.mul_(1e3)
    user = torch.arange(5)
    history = torch.tensor([[7, 7], [0, 1], [2, 7], [6, 5], [3, 3]])
    a = actor(user, history)
    assert a.shape == (5, 4)
    assert torch.all(a.norm(dim=1) <= 1.0)
    x = torch.randn(100, 4) * torch.logspace(-3, 3, 100)[:, None]
    squashed = into_ball(x)
    assert torch.all(squashed.norm(dim=1) < 1.0 + 1e-6)
    cos = F.cosine_similarity(squashed, x, dim=1)
    torch.testing.assert_close(cos, torch.ones(100))  # the direction is kept
    clipped = clip_to_ball(x)
    assert torch.all(clipped.norm(dim=1) <= 1.0 + 1e-6)
    inside = x.norm(dim=1) <= 1.0
    torch.testing.assert_close(clipped[inside], x[inside])  # points inside are left alone


def test_normalised_items_fill_the_unit_ball_and_keep_every_ranking():
    rng = np.random.default_rng(0)
    items = (rng.normal(size=(50, 6)) * 3 + 2).astype(np.float32)
    table, scale = normalise_items(items)
    assert table.shape == (50, 6)
    torch.testing.assert_close(table.mean(0), torch.zeros(6), atol=1e-6, rtol=0)
    assert table.norm(dim=1).max() == pytest.approx(1.0)
    torch.testing.assert_close(
        table, (torch.as_tensor(items) - torch.as_tensor(items).mean(0)) / scale
    )
    a = torch.randn(20, 6)
    assert torch.equal(
        torch.argsort(a @ table.T, dim=1), torch.argsort(a @ torch.as_tensor(items).T, dim=1)
    )


def test_actor_loss_is_normalised_q_plus_behaviour_cloning_on_engaged_steps():
    torch.manual_seed(0)
    nets = DDPGNetworks(n_users=4, n_items=6, dim=3, hidden=8)
    batch = random_batch()
    with torch.no_grad():
        mu = nets.actor(batch.user, batch.history)
        q = nets.critic(batch.user, batch.history, mu)
        engaged = batch.engaged.bool()
        bc = (mu - batch.action)[engaged].pow(2).sum(1).mean()
    torch.testing.assert_close(actor_loss(nets, batch, bc_lambda=0.0), bc)
    torch.testing.assert_close(
        actor_loss(nets, batch, bc_lambda=2.5), -2.5 * q.mean() / q.abs().mean() + bc
    )
    loss = actor_loss(nets, batch, bc_lambda=2.5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.actor.parameters())


# -- exploration noise ---------------------------------------------------------------------


def test_ornstein_uhlenbeck_noise_reverts_to_its_mean_with_the_right_statistics():
    """Many independent coordinates at once: after t steps from x0 the mean is
    mu + (x0 - mu)(1 - theta)^t; in the long run the variance is sigma^2 / (1 - (1-theta)^2)
    and the lag-1 autocorrelation is 1 - theta."""
    mu, theta, sigma, dim = 0.5, 0.15, 0.2, 20_000
    noise = OrnsteinUhlenbeckNoise(dim, mu=mu, theta=theta, sigma=sigma, seed=3)
    noise.state = np.full(dim, 3.0)
    for t in range(1, 11):
        x = noise.sample()
        expected = mu + (3.0 - mu) * (1 - theta) ** t
        assert x.mean() == pytest.approx(expected, abs=4 * 0.6 / np.sqrt(dim))
    for _ in range(200):  # long enough to forget x0: (0.85)^200 ~ 1e-14
        noise.sample()
    before = noise.state.copy()
    after = noise.sample()
    stationary_var = sigma**2 / (1 - (1 - theta) ** 2)
    assert after.mean() == pytest.approx(mu, abs=4 * np.sqrt(stationary_var / dim))
    assert after.var() == pytest.approx(stationary_var, rel=0.05)
    lag1 = np.corrcoef(before, after)[0, 1]
    assert lag1 == pytest.approx(1 - theta, abs=0.02)
    noise.reset()
    np.testing.assert_array_equal(noise.state, np.full(dim, mu))


def test_noise_is_seeded():
    for make in (
        lambda seed: OrnsteinUhlenbeckNoise(4, seed=seed),
        lambda seed: GaussianNoise(4, sigma=0.3, seed=seed),
    ):
        a, b, c = make(1), make(1), make(2)
        xs_a = [a.sample() for _ in range(5)]
        xs_b = [b.sample() for _ in range(5)]
        xs_c = [c.sample() for _ in range(5)]
        np.testing.assert_array_equal(np.stack(xs_a), np.stack(xs_b))
        assert not np.allclose(np.stack(xs_a), np.stack(xs_c))
    g = GaussianNoise(10_000, sigma=0.3, seed=0).sample()
    assert g.std() == pytest.approx(0.3, rel=0.05)


def test_act_adds_noise_within_the_ball_and_without_noise_ranks_as_the_scorer():
    agent, _, data = small_agent()
    user, history = data.user[:8], data.history[:8]
    clean = agent.act(user, history)
    with torch.no_grad():
        served = agent.scorer()(
            agent.user_vectors()[torch.as_tensor(user)], torch.as_tensor(history)
        )
    torch.testing.assert_close(clean @ agent.items.T, served)
    noisy = agent.act(user, history, OrnsteinUhlenbeckNoise(agent.cfg.embedding_dim, sigma=5.0))
    assert noisy.shape == clean.shape
    assert torch.all(noisy.norm(dim=1) <= 1.0 + 1e-6)
    assert not torch.allclose(noisy, clean)


# -- the agent -----------------------------------------------------------------------------


def test_the_action_space_stays_frozen_and_embeddings_are_checked():
    agent, _, data = small_agent()
    items_before = agent.items.clone()
    encoder_items = agent.nets.actor.encoder.item.weight.clone()
    curve = agent.fit(data)  # a second fit: the item space was set once, by the first
    assert np.isfinite(curve).all()
    assert torch.equal(agent.items, items_before)
    assert torch.equal(agent.nets.actor.encoder.item.weight, encoder_items)
    assert agent.scorer().items is agent.items
    emb = Embeddings(np.zeros((60, 4), np.float32), np.ones((30, 4), np.float32))
    assert DDPG(60, 30, DDPGConfig(embedding_dim=8), emb).cfg.embedding_dim == 4
    with pytest.raises(ValueError, match="embeddings cover"):
        DDPG(61, 30, embeddings=emb)


def test_a_saved_agent_scores_exactly_as_the_trained_one(tmp_path):
    from recloop.agents.checkpoint import load_agent, save_agent

    agent, log, data = small_agent()
    blob = save_agent(agent, list(log.user_ids), list(log.item_ids), last_n=5)
    saved = load_agent(blob, algo="ddpg", n_items=30)
    u = torch.as_tensor(data.user[:40])
    h = torch.as_tensor(data.history[:40])
    with torch.no_grad():
        expected = agent.scorer()(agent.user_vectors()[u], h)
    torch.testing.assert_close(saved.scores(saved.user_vectors[u], h), expected)
    assert saved.meta["hyperparameters"]["bc_lambda"] == agent.cfg.bc_lambda


def test_ddpg_beats_popularity_on_next_item_ndcg_and_interactive_return():
    """Seeded end to end on the popularity-biased shop: pre-trained item space, TD3+BC
    actor. Seed 1 is the hardest of 0-2 for the offline metric (popularity's NDCG is
    highest there; plain DDPG, bc_lambda large, falls below it). Figures seen: NDCG 0.557
    vs popularity 0.500, return 12.3 vs 9.3 (random 4.7)."""
    from recloop.agents.evaluation import baseline_rankings, offline_report
    from recloop.evaluation.ranking import ndcg_at_k
    from recloop.experiments.shop_judging import agent_recommender
    from recloop.simulators.ecommerce import interactive_returns, popularity_recommender

    seed = 1
    cfg = EcommerceConfig(n_users=300, n_items=150, seed=seed)
    world = EcommerceWorld(cfg)
    log = from_ecommerce(world.generate(40_000), cfg.n_users, cfg.n_items)
    train, _, test = split_by_time(build_trajectories(log, last_n=5), 0.0, 0.2)
    agent = DDPG(cfg.n_users, cfg.n_items, DDPGConfig(seed=0))
    curve = agent.fit(train)
    assert np.isfinite(curve).all() and np.isfinite(agent.losses["actor"]).all()

    report = offline_report(agent, test)
    truth = test.action[test.reward > 0]
    popular = baseline_rankings(train, len(truth), 10, seed)["popularity"]
    pop_ndcg = ndcg_at_k(popular, truth).mean()
    assert report.ndcg.value > pop_ndcg + 0.02, (report.ndcg.value, pop_ndcg)

    def interactive(recommend):
        return interactive_returns(world, recommend, sessions=300, seed=seed, last_n=5).mean()

    counts = np.bincount(train.action, weights=train.reward, minlength=cfg.n_items)
    ddpg_return = interactive(agent_recommender(agent, 5))
    pop_return = interactive(popularity_recommender(counts))
    assert ddpg_return > pop_return + 1.0, (ddpg_return, pop_return)
