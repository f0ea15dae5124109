"""Score-fusion DDPG: the baseline start (a = 1), clipping and the warm-up range, V/A
residual training, the shared V of the multi-agent mode, reward shaping, and the shop
where the best fusion weight is not 1."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")
pytestmark = pytest.mark.usefixtures("one_thread")

from recloop.agents.fusion_ddpg import (  # noqa: E402
    CONTROL,
    FusionDDPG,
    FusionDDPGConfig,
    FusionNetworks,
    critic_losses,
    fused_scores,
    shaped_reward,
)
from recloop.simulators.environment import Feedback, Request, play  # noqa: E402
from recloop.simulators.fusion_shop import FusionShop, FusionShopConfig  # noqa: E402


class Fixed:
    """The baseline ranker at a fixed fusion weight."""

    def __init__(self, a: float) -> None:
        self.a = a

    def rank(self, request):
        return np.argsort(-fused_scores(request.item_features, self.a), kind="stable").tolist()

    def observe(self, feedback) -> None:
        pass


def test_the_fused_score_is_click_times_pay_plus_a_phi():
    items = np.array([[0.1, 0.2, 0.5], [0.3, 0.1, 0.0]])
    np.testing.assert_allclose(fused_scores(items, 2.0), [0.1 * (0.2 + 1.0), 0.3 * 0.1])


def test_the_shops_best_fusion_weight_is_not_the_baselines():
    env = FusionShop(FusionShopConfig(requests=20_000))
    totals = {}
    for a in (0.4, 1.0, 4.0):
        play(env, Fixed(a), seed=0)
        totals[a] = env.totals["reward"]
    assert totals[0.4] > 1.02 * totals[1.0] > 1.02 * totals[4.0]


def test_the_shop_can_reward_each_slate_with_its_expected_value():
    sampled, expected = (
        FusionShop(FusionShopConfig(requests=50, expected_rewards=e)) for e in (False, True)
    )
    got = {}
    for env in (sampled, expected):
        request = env.reset(3)
        rewards = []
        while request is not None:
            order = list(range(len(request.candidates)))[::-1]
            want = env.expected_reward(
                bool(env._premium[request.user]), request.item_features, order
            )
            feedback, request = env.step(order)
            rewards.append((feedback.reward, want))
        got[env.config.expected_rewards] = np.array(rewards)
    np.testing.assert_allclose(got[True][:, 0], got[True][:, 1])
    assert np.abs(got[False][:, 0] - got[False][:, 1]).mean() > 0.5  # sampled: noisy


def test_the_actor_starts_at_the_baseline_and_serves_inside_the_allowed_range():
    cfg = FusionDDPGConfig(a_min=0.0, a_max=4.0, max_step=0.25, warmup_requests=100, seed=3)
    agent = FusionDDPG(2, cfg)
    env = FusionShop(FusionShopConfig(requests=300))
    request = env.reset(0)
    assert agent.policy_action(request) == pytest.approx(1.0, abs=1e-6)
    assert agent.allowed() == (0.75, 1.25)
    served = []
    while request is not None:
        low, high = agent.allowed()
        order = agent.rank(request)
        served.append(agent._last[2])
        assert low <= served[-1] <= high
        feedback, request = env.step(order)
        agent.observe(feedback)
    assert agent.allowed() == (0.0, 4.0)  # after the warm-up: the whole range
    assert min(served) >= 0.0 and max(served) <= 4.0 and np.std(served) > 0  # it explored
    with pytest.raises(ValueError, match="contain the baseline"):
        FusionDDPG(2, FusionDDPGConfig(a_min=1.5, a_max=3.0))


def _fit_critic(served: float, spread: float, steps: int) -> FusionNetworks:
    """Critic trained on returns R = 2 s + 1.5 (a - 1) + noise, a uniform in
    ``served +- spread`` (seeded)."""
    torch.manual_seed(0)
    nets = FusionNetworks(1, FusionDDPGConfig(hidden=16))
    opt = torch.optim.Adam(nets.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        s = torch.rand(256, 1, generator=g) * 2 - 1
        a = served + spread * (torch.rand(256, generator=g) * 2 - 1)
        r = 2 * s[:, 0] + 1.5 * (a - 1.0) + 0.1 * torch.randn(256, generator=g)
        v_loss, a_loss = critic_losses(nets, s, a, r, agent=0)
        opt.zero_grad()
        (v_loss + a_loss).backward()
        opt.step()
    return nets


def test_v_learns_the_states_return_and_a_the_residual():
    """Returns R = 2 s + 1.5 (a - 1) + noise with a around 1: V(s) -> 2 s (the mean over
    actions), A(s, a) -> 1.5 (a - 1); A's loss never moves V or the encoder."""
    nets = _fit_critic(served=1.0, spread=0.5, steps=1500)
    with torch.no_grad():
        s = torch.linspace(-0.9, 0.9, 7)[:, None]
        h = nets.encoder(s)
        torch.testing.assert_close(nets.v(h), 2 * s[:, 0], atol=0.08, rtol=0)
        adv = {a: nets.advantage(h, torch.full((7,), a), 0) for a in (0.6, 1.0, 1.4)}
        assert torch.all(adv[0.6] < adv[1.0]) and torch.all(adv[1.0] < adv[1.4])
        # the sign is the claim: A > 0 exactly where an action beats the state's average
        assert torch.all(adv[1.4] > 0) and torch.all(adv[0.6] < 0)
        slope = (adv[1.4] - adv[0.6]) / 0.8
        torch.testing.assert_close(slope, torch.full((7,), 1.5), atol=0.4, rtol=0)
    nets.zero_grad()
    _, a_loss = critic_losses(nets, s, torch.ones(7), torch.zeros(7), agent=0)
    a_loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in nets.value.parameters())
    assert all(p.grad is None or not p.grad.any() for p in nets.encoder.parameters())


def test_v_stays_the_baselines_value_when_the_traffic_has_left_the_baseline():
    """Served a around 0.7, never 1: V(s) must still converge to what a = 1 earns (2 s) and
    A(s, 0.7) to the truth -0.45 (V regressing on the raw return would learn 2 s - 0.45,
    the served policy's value, leaving A nothing to find at the served a)."""
    nets = _fit_critic(served=0.7, spread=0.2, steps=2000)
    with torch.no_grad():
        s = torch.linspace(-0.9, 0.9, 7)[:, None]
        h = nets.encoder(s)
        torch.testing.assert_close(nets.v(h), 2 * s[:, 0], atol=0.1, rtol=0)
        adv = nets.advantage(h, torch.full((7,), 0.7), 0)
        torch.testing.assert_close(adv, torch.full((7,), -0.45), atol=0.08, rtol=0)


def test_two_agents_share_the_encoder_and_v_and_each_a_head_converges():
    """An A/B test of two agents: arm 0's returns rise with a, arm 1's fall. The shared V
    learns the state's value from both arms' traffic, each A head its own arm's slope."""
    cfg = FusionDDPGConfig(n_agents=2, hidden=16, train_steps=1, batch_size=128, seed=1)
    agent = FusionDDPG(1, cfg)
    assert len(agent.nets.actors) == 2 and len(agent.nets.advantages) == 2
    rng = np.random.default_rng(0)
    slopes = {0: 1.5, 1: -1.0}
    for _ in range(1500):
        for k, slope in slopes.items():
            for _ in range(8):
                s = rng.uniform(-1, 1)
                a = 1.0 + rng.uniform(-0.5, 0.5)
                r = 2 * s + slope * (a - 1.0) + 0.1 * rng.standard_normal()
                agent.replay[k].append((np.array([s]), a, r, None))
        agent.train()
    for k, slope in slopes.items():
        losses = agent.losses[k]["advantage"]
        assert np.mean(losses[-100:]) < 0.2 * np.mean(losses[:100])  # converged
        with torch.no_grad():
            h = agent.nets.encoder(torch.tensor([[0.3]]))
            gain = agent.nets.advantage(h, torch.tensor([1.4]), k) - agent.nets.advantage(
                h, torch.tensor([0.6]), k
            )
        assert float(gain) / 0.8 == pytest.approx(slope, abs=0.4)
    with torch.no_grad():
        v = agent.nets.v(agent.nets.encoder(torch.tensor([[-0.5], [0.5]])))
    torch.testing.assert_close(v, torch.tensor([-1.0, 1.0]), atol=0.15, rtol=0)


def test_a_control_bucket_is_served_the_baseline_and_pins_v():
    """Both agents serve far from a = 1 (a in [0.3, 0.5]) and their returns carry each
    agent's own gain: +0.3 at a = 0.4 for agent 0, -0.2 for agent 1. From their traffic
    alone V and the A heads cannot be told apart (any V' = V + c, A' = A - c fits as
    well); the control bucket's a = 1 returns pin V to the baseline's value 2 s, so each
    A head learns its agent's gain over the baseline."""
    cfg = FusionDDPGConfig(
        n_agents=2, control_share=0.3, hidden=16, train_steps=1, batch_size=128, seed=4
    )
    agent = FusionDDPG(1, cfg)
    users = [agent.agent_for(_request(u)) for u in range(2000)]
    assert users.count(CONTROL) / 2000 == pytest.approx(0.3, abs=0.03)
    assert users.count(0) == pytest.approx(users.count(1), rel=0.1)
    control_user = users.index(CONTROL)
    for _ in range(20):  # served exactly a = 1, no exploration noise
        agent.rank(_request(control_user))
        assert agent._last is not None and agent._last[2] == 1.0
    rng = np.random.default_rng(0)
    gains = {0: 0.3, 1: -0.2}
    for _ in range(2500):
        for _ in range(8):
            s = rng.uniform(-1, 1)
            agent.control.append((np.array([s]), 1.0, 2 * s + 0.1 * rng.standard_normal(), None))
            for k, gain in gains.items():
                a = rng.uniform(0.3, 0.5)
                r = 2 * s + gain + 0.1 * rng.standard_normal()
                agent.replay[k].append((np.array([s]), a, r, None))
        agent.train()
    with torch.no_grad():
        h = agent.nets.encoder(torch.linspace(-0.9, 0.9, 7)[:, None])
        torch.testing.assert_close(
            agent.nets.v(h), 2 * torch.linspace(-0.9, 0.9, 7), atol=0.1, rtol=0
        )
        for k, gain in gains.items():
            adv = agent.nets.advantage(h, torch.full((7,), 0.4), k)
            torch.testing.assert_close(adv, torch.full((7,), gain), atol=0.08, rtol=0)


def _request(user: int) -> Request:
    items = np.full((4, 3), 0.2)
    return Request(
        user=user,
        time=0.0,
        user_features=np.array([0.0]),
        context=np.zeros(0),
        candidates=np.arange(4, dtype=np.int64),
        item_features=items,
        cross_features=np.zeros((4, 0)),
    )


def test_browsing_without_buying_is_penalised():
    cfg = FusionDDPGConfig(browse_threshold=2, browse_penalty=0.5)
    clicks_no_buy = Feedback(np.arange(3), np.array([1.0, 1.0, 0.0]), np.zeros(3), 2.0)
    clicks_and_buy = Feedback(np.arange(3), np.array([1.0, 1.0, 0.0]), np.array([1.0, 0, 0]), 4.0)
    one_click = Feedback(np.arange(3), np.array([1.0, 0.0, 0.0]), np.zeros(3), 1.0)
    assert shaped_reward(2.0, clicks_no_buy, cfg) == 1.5
    assert shaped_reward(4.0, clicks_and_buy, cfg) == 4.0
    assert shaped_reward(1.0, one_click, cfg) == 1.0


@pytest.mark.parametrize("target_network", [True, False])
def test_with_gamma_v_learns_the_discounted_return_of_returning_users(target_network):
    """Users who always come back and earn 1 per request: with gamma 0.5 the value of a
    state is the discounted sum 1 / (1 - 0.5) = 2, bootstrapped from the next visit's state
    (by the target copy of V, or by V itself)."""
    cfg = FusionDDPGConfig(
        gamma=0.5, target_network=target_network, tau=0.05, train_every=20, train_steps=10,
        batch_size=64, actor_delay=10**9, seed=2,
    )  # fmt: skip
    agent = FusionDDPG(2, cfg)
    rng = np.random.default_rng(0)
    items = np.column_stack([rng.uniform(0.1, 0.3, 10), rng.uniform(0.1, 0.3, 10), rng.random(10)])
    for i in range(4000):
        request = Request(
            user=i % 5,
            time=float(i),
            user_features=np.array([1.0, 0.5]),
            context=np.zeros(0),
            candidates=np.arange(10, dtype=np.int64),
            item_features=items,
            cross_features=np.zeros((10, 0)),
        )
        shown = np.array(agent.rank(request)[:3])
        agent.observe(Feedback(shown, np.zeros(3), np.zeros(3), 1.0))
    with torch.no_grad():
        v = float(agent.nets.v(agent.nets.encoder(torch.tensor([[1.0, 0.5]]))))
    assert v == pytest.approx(2.0, abs=0.15), v
    assert agent.replay[0][0][3] is not None  # transitions carry the next visit's state
