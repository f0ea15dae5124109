"""DRN: the dueling decomposition, the double-DQN target, the reward with activeness at the
user's return, the DBGD minor update, and that it learns online in the simulator."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")
pytestmark = pytest.mark.usefixtures("one_thread")

from recloop.agents.dbgd import EXPLOIT, EXPLORE, Interleaving  # noqa: E402
from recloop.agents.drn import DRN, DRNConfig, DuelingQ, double_dqn_loss  # noqa: E402
from recloop.features.activeness import Activeness  # noqa: E402
from recloop.simulators.environment import Feedback, RandomRanker, Request, play  # noqa: E402
from recloop.simulators.returning_users import ReturningUsers, ReturningUsersConfig  # noqa: E402


def request(user: int, time: float, m: int = 6, seed: int = 0) -> Request:
    rng = np.random.default_rng(seed)
    return Request(
        user=user,
        time=time,
        user_features=rng.random(3),
        context=rng.random(2),
        candidates=np.arange(m, dtype=np.int64) + 10 * seed,
        item_features=rng.random((m, 4)),
        cross_features=rng.random((m, 1)),
    )


def test_q_is_a_shared_value_plus_a_per_item_advantage():
    torch.manual_seed(0)
    q = DuelingQ(state_dim=5, pair_dim=5, hidden=8)
    state, pairs = torch.randn(3, 5), torch.randn(3, 7, 5)
    out = q(state, pairs)
    assert out.shape == (3, 7)
    with torch.no_grad():
        value = q.value(state)
        advantage = q.advantage(torch.cat([state[:, None].expand(-1, 7, -1), pairs], -1))
    torch.testing.assert_close(out, value + advantage.squeeze(-1))
    # the value sees only the state: other candidates change A alone
    moved = pairs + 1.0
    with torch.no_grad():
        moved_advantage = q.advantage(torch.cat([state[:, None].expand(-1, 7, -1), moved], -1))
    torch.testing.assert_close(q(state, moved) - moved_advantage.squeeze(-1), value.expand(-1, 7))


def test_both_rankings_are_the_q_orders_of_w_and_of_w_tilde():
    """rank orders by A alone, W and W~ in one batched pass: the orders Q itself gives."""
    agent = DRN(state_dim=5, pair_dim=5, slate_size=3, cfg=DRNConfig(seed=2))
    for seed in range(20):
        req = request(user=seed, time=0.0, m=40, seed=seed)
        agent.twins.perturb(agent.cfg.alpha, agent.gen)
        advantages = agent._twin_advantages(req)
        for row, net in ((0, agent.q), (1, agent.explore)):
            q = agent.scores(req, net)
            assert torch.argsort(advantages[row], descending=True).tolist() == (
                torch.argsort(q, descending=True).tolist()
            )


def test_the_replay_memory_holds_nothing_the_garbage_collector_traverses():
    """Tensors are GC-tracked objects: a replay of them made every full collection walk
    tens of thousands of objects (pauses of up to 140 ms here). Arrays and floats are not."""
    import gc

    env = ReturningUsers(ReturningUsersConfig(n_users=30, candidates=10, horizon_days=10))
    probe = env.reset(0)
    state_dim = len(probe.user_features) + len(probe.context)
    pair_dim = probe.cross_features.shape[1] + probe.item_features.shape[1]
    agent = DRN(state_dim, pair_dim, env.slate_size, DRNConfig(major_every=50))
    play(env, agent, seed=0)
    assert len(agent.replay) > 100 and agent.stats["major_updates"] > 0
    assert not any(gc.is_tracked(part) for t in agent.replay for part in t)


def test_the_double_dqn_target_lets_the_online_net_choose_and_the_target_net_value():
    torch.manual_seed(0)
    online, target = DuelingQ(2, 2, 8), DuelingQ(2, 2, 8)
    s, a = torch.randn(2), torch.randn(2)
    s2, next_pairs = torch.randn(2), torch.randn(4, 2)
    arr = {"s": s.numpy(), "a": a.numpy(), "s2": s2.numpy(), "next": next_pairs.numpy()}
    batch = [
        (arr["s"], arr["a"], 1.5, arr["s2"], arr["next"], 1.0),
        (arr["s"], arr["a"], 0.5, arr["s2"], arr["next"][:2], 0.0),
    ]
    with torch.no_grad():
        best = int(online(s2[None], next_pairs[None])[0].argmax())
        y0 = 1.5 + 0.4 * target(s2[None], next_pairs[None])[0, best]
        y1 = 0.5  # not alive: no bootstrap
        q_sa = online(s[None], a[None, None])[0, 0]
    loss = double_dqn_loss(online, target, batch, gamma=0.4)
    torch.testing.assert_close(loss, ((q_sa - y0) ** 2 + (q_sa - y1) ** 2) / 2)


def test_a_transition_completes_at_the_users_return_with_its_activeness():
    cfg = DRNConfig(beta=0.5, minor_updates=False, major_every=10_000)
    agent = DRN(state_dim=5, pair_dim=5, slate_size=2, cfg=cfg)
    first = request(user=7, time=1000.0)
    order = agent.rank(first)
    shown = first.candidates[order[:2]]
    agent.observe(Feedback(shown, np.array([1.0, 0.0]), np.zeros(2), 0.0))
    assert len(agent.replay) == 0 and 7 in agent.pending  # waiting for the user
    later = request(user=7, time=1000.0 + 86400.0, seed=1)
    agent.rank(later)
    act = Activeness().after_return(Activeness().start, 86400.0)
    rewards = [t[2] for t in agent.replay]
    assert rewards == pytest.approx([1.0 + 0.5 * act, 0.0 + 0.5 * act])
    assert all(t[5] == 1.0 for t in agent.replay)
    np.testing.assert_allclose(agent.replay[0][4][:, -4:], later.item_features, rtol=1e-6)
    agent.observe(Feedback(later.candidates[:2], np.zeros(2), np.zeros(2), 0.0))
    agent.end_episode(now=1000.0 + 3 * 86400.0)  # never came back: terminal, decayed
    tail = list(agent.replay)[-2:]
    decayed = Activeness().decayed(act, 2 * 86400.0)
    assert [t[2] for t in tail] == pytest.approx([0.5 * decayed] * 2)
    assert all(t[5] == 0.0 for t in tail)


def test_the_minor_update_moves_towards_the_exploration_net_only_when_it_wins():
    agent = DRN(state_dim=5, pair_dim=5, slate_size=2, cfg=DRNConfig(eta=0.5))
    req = request(user=1, time=0.0)
    agent.rank(req)
    _, mixed, explore_net = agent._shown
    before = [p.detach().clone() for p in agent.q.parameters()]
    # clicks only where the exploit list contributed: no move
    clicks = np.array([1.0 if s == EXPLOIT else 0.0 for s in mixed.source])
    if clicks.sum() == 0:
        clicks[:] = 0.0
    agent.observe(Feedback(req.candidates[mixed.items], clicks, np.zeros(2), 0.0))
    for p, b in zip(agent.q.parameters(), before, strict=True):
        assert torch.equal(p, b)
    # now force a comparison the exploration list wins
    agent.rank(request(user=2, time=1.0))
    agent._shown = (
        agent._shown[0],
        Interleaving(agent._shown[1].items, [EXPLORE, EXPLORE]),
        agent._shown[2],
    )
    _, _, explore_net = agent._shown
    before = [p.detach().clone() for p in agent.q.parameters()]
    agent.observe(
        Feedback(
            agent._shown[0].candidates[agent._shown[1].items],
            np.array([1.0, 0.0]),
            np.zeros(2),
            1.0,
        )
    )
    for p, b, e in zip(agent.q.parameters(), before, explore_net.parameters(), strict=True):
        torch.testing.assert_close(p, b + 0.5 * (e - b))
    assert agent.stats["explore_wins"] == 1 and agent.stats["comparisons"] == 2


def test_drn_learns_online_to_beat_random_on_clicks():
    """Seeded, one 40-day episode of 200 users: DRN learning from scratch (major updates
    from replay, DBGD minor updates) against random rankings, on the episode's clicks."""
    cfg = ReturningUsersConfig(n_users=200, horizon_days=40)
    env = ReturningUsers(cfg)
    play(env, RandomRanker(0), seed=0)
    random_clicks = env.totals["clicks"]
    probe = env.reset(0)
    agent = DRN(len(probe.user_features) + 2, 1 + probe.item_features.shape[1], 5, DRNConfig())
    answered, _ = play(env, agent, seed=0)
    assert answered > 3000
    assert agent.stats["major_updates"] > 10 and agent.stats["explore_wins"] > 0
    # seen: 3,738 against 3,463 over the whole episode, its learning phase included
    assert env.totals["clicks"] > 1.05 * random_clicks, (env.totals["clicks"], random_clicks)


def test_an_ended_session_closes_its_transitions_at_once():
    """ends_session: the user's last slate is terminal now, not left pending forever (RecSim
    users never come back: their last transition used to be lost)."""
    agent = DRN(5, 5, 2, DRNConfig(beta=0.0, minor_updates=False, major_every=10_000))
    req = request(user=3, time=0.0)
    agent.rank(req)
    agent.observe(Feedback(req.candidates[:2], np.array([0.0, 1.0]), np.zeros(2), 1.0, {}, True))
    assert 3 not in agent.pending
    assert [t[2] for t in agent.replay] == [0.0, 1.0] and all(t[5] == 0.0 for t in agent.replay)


def test_session_returns_credit_each_shown_item_with_the_sessions_later_clicks():
    gamma = 0.5
    cfg = DRNConfig(beta=0.0, minor_updates=False, major_every=10_000, gamma=gamma)
    agent = DRN(5, 5, 2, DRNConfig(**{**cfg.__dict__, "returns": "session"}))
    clicks = [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    for step, row in enumerate(clicks):
        req = request(user=4, time=float(step), seed=step)
        agent.rank(req)
        last = step == len(clicks) - 1
        agent.observe(Feedback(req.candidates[:2], np.array(row), np.zeros(2), 0.0, {}, last))
        assert len(agent.replay) == (6 if last else 0)  # learned when the session ends
    targets = [t[2] for t in agent.replay]
    # newest first: step 2's items, then step 1's (later = 1), then step 0's (later = 0.5)
    assert targets == pytest.approx([0.0, 1.0, gamma * 1.0, gamma * 1.0, 1.0 + 0.25, 0.25])
    assert all(t[5] == 0.0 for t in agent.replay)  # a return, nothing to bootstrap
