"""Score-fusion DDPG (after Meituan's "guess you like" ranking): learn, per request, the
weight ``a`` with which a baseline ranker fuses its predicted scores,
``score = click * (pay + a * phi)``, instead of tuning it by hand for everyone.

* **Actor** ``a = mu(s)``: the state (user, context, recent behaviour) through the shared
  encoder, squashed into ``[a_min, a_max]``; initialised so that ``mu(s) = 1`` everywhere,
  i.e. the agent starts as the baseline ranking. Online, Ornstein-Uhlenbeck noise explores
  around it (:mod:`recloop.agents.noise`), clipped to the range.
* **Critic** ``Q(s, a) = V(s) + A(s, a)``: V is trained first, on the observed returns of
  the warm-up (the baseline's traffic), then on ``R - A(s, a)``; A on the residual
  ``R - V(s)``. A is quadratic in a and zero at a = 1 (:meth:`FusionNetworks.advantage`),
  so V stays the baseline's value and A > 0 says an action beats the baseline in that
  state, however far the served a has moved. The actor climbs ``A(s, mu(s))`` (V does not
  depend on a).
* **Target**: with ``gamma > 0`` the return bootstraps ``r + gamma V(s')``, from a target
  copy of V or (``target_network=False``) from the same parameters.
* **Safety**: during ``warmup_requests`` the served ``a`` may leave 1 by at most a linearly
  growing margin (``max_step``), so the early reward stays near the baseline's.
* **Multi-agent** (an A/B test of several policies): agents share the state encoder and V,
  each has its own actor and A head; each request is served (and trained) by one of them.
  With ``control_share`` a share of users is the test's control bucket, served the baseline
  a = 1 itself: V also regresses on their returns, which pins it to the baseline's value,
  so each A head is measured against the baseline's own traffic. (Without it, once every
  agent has left a = 1, V and the A heads are told apart only by the heads' curvature, and
  the heads' errors grow to the size of the advantages, measured in
  ``benchmarks/fusion_ddpg.py``.)
* **Reward shaping**: a request with at least ``browse_threshold`` clicks and no purchase
  costs ``browse_penalty`` (long browsing without conversion).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recloop.agents.fusion import fused_scores
from recloop.agents.networks import mlp, soft_update
from recloop.agents.noise import OrnsteinUhlenbeckNoise
from recloop.core.interaction import Feedback, Floats, Request


@dataclass
class FusionDDPGConfig:
    a_min: float = 0.0
    a_max: float = 4.0
    """The fusion weight's range (the baseline is a = 1)."""
    hidden: int = 32
    gamma: float = 0.0
    """0: each request's reward is its own return (requests are independent)."""
    target_network: bool = True
    """With gamma > 0: bootstrap from a slowly updated copy of V (False: V itself)."""
    tau: float = 0.01
    noise_sigma: float = 0.1
    noise_theta: float = 0.15
    warmup_requests: int = 2000
    """Requests over which the allowed distance from a = 1 grows to the whole range."""
    max_step: float = 0.25
    """Distance from a = 1 allowed at the start of the warm-up."""
    browse_threshold: int = 3
    browse_penalty: float = 0.0
    """Reward shaping: subtracted when a request has >= threshold clicks and no purchase."""
    n_agents: int = 1
    """More than 1: an A/B test; agents share the encoder and V, each has an actor and A."""
    control_share: float = 0.0
    """Share of users in the control bucket, served a = 1 without noise; V is trained on
    their returns as well as on the agents' returns less their advantages."""
    actor_delay: int = 3000
    """Requests before the actor starts to move (the critic first learns from the
    exploration around a = 1; an actor climbing an untrained A runs off to a bound)."""
    actor_learning_rate: float = 1e-3
    train_every: int = 50
    train_steps: int = 20
    batch_size: int = 256
    replay_size: int = 20_000
    learning_rate: float = 3e-3
    seed: int = 0


CONTROL = -1
"""The agent index of the control bucket (served the baseline a = 1)."""


class FusionNetworks(nn.Module):
    """Shared encoder and V; one actor and one A head per agent."""

    def __init__(self, state_dim: int, cfg: FusionDDPGConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.a_min, self.a_max = cfg.a_min, cfg.a_max
        self.encoder = mlp([state_dim, h, h], nn.ReLU())
        self.value = nn.Linear(h, 1)
        self.actors = nn.ModuleList(nn.Linear(h, 1) for _ in range(cfg.n_agents))
        self.advantages = nn.ModuleList(mlp([h, h, 2]) for _ in range(cfg.n_agents))
        # the actor starts at a = 1: zero weights, and the bias that squashes to 1
        unit = (1.0 - cfg.a_min) / (cfg.a_max - cfg.a_min)
        for actor in self.actors:
            assert isinstance(actor, nn.Linear)
            nn.init.zeros_(actor.weight)
            nn.init.constant_(actor.bias, math.log(unit / (1.0 - unit)))

    def action(self, h: torch.Tensor, agent: int) -> torch.Tensor:
        z = self.actors[agent](h).squeeze(-1)
        out: torch.Tensor = self.a_min + (self.a_max - self.a_min) * torch.sigmoid(z)
        return out

    def v(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.value(h).squeeze(-1)
        return out

    def advantage(self, h: torch.Tensor, a: torch.Tensor, agent: int) -> torch.Tensor:
        """``A(s, a) = w(s) (a - 1) - softplus(c(s)) (a - 1)^2``: zero at the baseline
        a = 1 by construction, concave in a (one best weight per state, as in NAF's
        quadratic advantages), so its gradient leads the actor to that weight instead of
        to a bound where a noisy fit happens to rise."""
        w, c = self.advantages[agent](h).unbind(-1)
        d = a - 1.0
        out: torch.Tensor = w * d - F.softplus(c) * d * d
        return out


def critic_losses(
    nets: FusionNetworks,
    state: torch.Tensor,
    action: torch.Tensor,
    ret: torch.Tensor,
    agent: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(V loss, A loss): V regresses on ``R - A(s, a)``, A on the residual ``R - V(s)``,
    each with the other held fixed. A is zero at a = 1, so V converges to what the baseline
    earns in state s and A to how much an action beats it, wherever the traffic's a has
    moved. (V regressing on R itself learns what the *served* policy earns; once the actor
    has left a = 1, A is then fitted to the wrong zero and its error stays about the size
    of the advantage it should find: measured in ``benchmarks/fusion_ddpg.py``.)"""
    h = nets.encoder(state)
    v = nets.v(h)
    adv = nets.advantage(h.detach(), action, agent)
    v_loss = F.mse_loss(v, ret - adv.detach())
    a_loss = F.mse_loss(adv, (ret - v).detach())
    return v_loss, a_loss


def actor_loss(nets: FusionNetworks, state: torch.Tensor, agent: int) -> torch.Tensor:
    """``-A(s, mu(s))``: the actor moves where its advantage head says it gains."""
    h = nets.encoder(state).detach()
    return -nets.advantage(h, nets.action(h, agent), agent).mean()


def shaped_reward(reward: float, feedback: Feedback, cfg: FusionDDPGConfig) -> float:
    """Minus ``browse_penalty`` for browsing without converting."""
    browsing = feedback.clicks.sum() >= cfg.browse_threshold and feedback.purchases.sum() == 0
    return reward - cfg.browse_penalty if browsing else reward


class FusionDDPG:
    """Online agent for an environment whose items carry ``click, pay, phi`` predictions:
    ``rank`` a request, then ``observe`` its feedback and reward."""

    def __init__(self, state_dim: int, cfg: FusionDDPGConfig | None = None) -> None:
        self.cfg = cfg = cfg or FusionDDPGConfig()
        if not cfg.a_min < 1.0 < cfg.a_max:
            raise ValueError("the range [a_min, a_max] must contain the baseline a = 1")
        if not 0.0 <= cfg.control_share < 1.0:
            raise ValueError("control_share must be in [0, 1)")
        torch.manual_seed(cfg.seed)
        self.nets = FusionNetworks(state_dim, cfg)
        self.target_value = copy.deepcopy(self.nets.value).requires_grad_(False)
        self.critic_opt = torch.optim.Adam(
            [*self.nets.encoder.parameters(), *self.nets.value.parameters(),
             *self.nets.advantages.parameters()],
            lr=cfg.learning_rate,
        )  # fmt: skip
        self.actor_opt = torch.optim.Adam(self.nets.actors.parameters(), lr=cfg.actor_learning_rate)
        self.noise = [
            OrnsteinUhlenbeckNoise(
                1, theta=cfg.noise_theta, sigma=cfg.noise_sigma, seed=cfg.seed + k
            )
            for k in range(cfg.n_agents)
        ]
        self.rng = np.random.default_rng(cfg.seed)
        self.replay: list[deque[tuple[Floats, float, float, Floats | None]]] = [
            deque(maxlen=cfg.replay_size) for _ in range(cfg.n_agents)
        ]
        self.control: deque[tuple[Floats, float, float, Floats | None]] = deque(
            maxlen=cfg.replay_size
        )
        """The control bucket's transitions (a = 1): V's training data when it has any."""
        self.requests = 0
        self._user = -1
        self.losses: list[dict[str, list[float]]] = [
            {"value": [], "advantage": [], "actor": []} for _ in range(cfg.n_agents)
        ]
        self._last: tuple[int, Floats, float] | None = None
        self.pending: dict[int, tuple[int, Floats, float, float]] = {}
        """With gamma > 0: user -> their last (agent, state, a, reward), completed (with
        the next state) when the user's next request arrives."""

    def agent_for(self, request: Request) -> int:
        """Which agent serves this request (by user: a stable A/B split), or
        :data:`CONTROL`."""
        # Knuth's multiplicative hash: a user's bucket does not follow their id's order
        if (request.user * 2654435761) % 2**32 < self.cfg.control_share * 2**32:
            return CONTROL
        return request.user % self.cfg.n_agents

    def memory(self, agent: int) -> deque[tuple[Floats, float, float, Floats | None]]:
        """The replay memory of an agent (or of the control bucket)."""
        return self.control if agent == CONTROL else self.replay[agent]

    def state(self, request: Request) -> Floats:
        out: Floats = np.concatenate([request.user_features, request.context])
        return out

    @torch.no_grad()
    def policy_action(self, request: Request, agent: int | None = None) -> float:
        """mu(s) without noise."""
        k = self.agent_for(request) if agent is None else agent
        if k == CONTROL:
            return 1.0
        s = torch.as_tensor(self.state(request), dtype=torch.float32)[None]
        return float(self.nets.action(self.nets.encoder(s), k)[0])

    def allowed(self) -> tuple[float, float]:
        """The served a's range now: near 1 early in the warm-up, the whole range after."""
        cfg = self.cfg
        grow = min(1.0, self.requests / max(1, cfg.warmup_requests))
        reach = cfg.max_step + grow * max(cfg.a_max - 1.0, 1.0 - cfg.a_min)
        return max(cfg.a_min, 1.0 - reach), min(cfg.a_max, 1.0 + reach)

    def rank(self, request: Request) -> list[int]:
        waiting = self.pending.pop(request.user, None)
        if waiting is not None:
            k0, s0, a0, r0 = waiting
            self.memory(k0).append((s0, a0, r0, self.state(request)))
        k = self.agent_for(request)
        if k == CONTROL:
            a = 1.0
        else:
            low, high = self.allowed()
            a = self.policy_action(request, k) + float(self.noise[k].sample()[0])
            a = float(np.clip(a, low, high))
        self._last = (k, self.state(request), a)
        self._user = request.user
        order: list[int] = np.argsort(
            -fused_scores(request.item_features, a), kind="stable"
        ).tolist()
        return order

    def observe(self, feedback: Feedback) -> None:
        """The feedback on the last ranking (with the reward it earned)."""
        assert self._last is not None, "observe() follows rank()"
        k, state, a = self._last
        reward = shaped_reward(feedback.reward, feedback, self.cfg)
        if self.cfg.gamma > 0:
            self.pending[self._user] = (k, state, a, reward)
        else:
            self.memory(k).append((state, a, reward, None))
        self.requests += 1
        if self.requests % self.cfg.train_every == 0:
            self.train()

    def end_episode(self) -> None:
        """Users who did not come back: their last transitions end there."""
        for k, state, a, reward in self.pending.values():
            self.memory(k).append((state, a, reward, None))
        self.pending.clear()

    def train(self) -> None:
        cfg = self.cfg
        for k, memory in enumerate(self.replay):
            if len(memory) < cfg.batch_size:
                continue
            for _ in range(cfg.train_steps):
                state, action, ret = self._sample(memory)
                v_loss, a_loss = critic_losses(self.nets, state, action, ret, k)
                if len(self.control) >= cfg.batch_size:  # the control bucket pins V
                    c_state, _, c_ret = self._sample(self.control)
                    v_loss = v_loss + F.mse_loss(self.nets.v(self.nets.encoder(c_state)), c_ret)
                self.critic_opt.zero_grad()
                (v_loss + a_loss).backward()  # type: ignore[no-untyped-call]
                self.critic_opt.step()
                p_loss = actor_loss(self.nets, state, k)
                if self.requests >= cfg.actor_delay:
                    self.actor_opt.zero_grad()
                    p_loss.backward()  # type: ignore[no-untyped-call]
                    self.actor_opt.step()
                if cfg.target_network:
                    soft_update(self.target_value, self.nets.value, cfg.tau)
                log = self.losses[k]
                log["value"].append(float(v_loss.detach()))
                log["advantage"].append(float(a_loss.detach()))
                log["actor"].append(float(p_loss.detach()))

    def _sample(
        self, memory: deque[tuple[Floats, float, float, Floats | None]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A minibatch (states, actions, returns), the returns bootstrapped with gamma."""
        rows = self.rng.choice(len(memory), self.cfg.batch_size, replace=False)
        batch = [memory[int(r)] for r in rows]
        state = torch.as_tensor(np.stack([b[0] for b in batch]), dtype=torch.float32)
        action = torch.tensor([b[1] for b in batch], dtype=torch.float32)
        ret = torch.tensor([b[2] for b in batch], dtype=torch.float32)
        if self.cfg.gamma > 0:
            ret = ret + self.cfg.gamma * self._bootstrap(batch)
        return state, action, ret

    @torch.no_grad()
    def _bootstrap(self, batch: list[tuple[Floats, float, float, Floats | None]]) -> torch.Tensor:
        """V(s') of each transition's next state (0 where the user did not come back), by
        the slowly updated copy of V or, without a target network, by V itself; the next
        states are encoded in one pass."""
        value = self.target_value if self.cfg.target_network else self.nets.value
        out = torch.zeros(len(batch))
        alive = [i for i, b in enumerate(batch) if b[3] is not None]
        if alive:
            nxt = np.stack([batch[i][3] for i in alive])  # type: ignore[misc]
            h = self.nets.encoder(torch.as_tensor(nxt, dtype=torch.float32))
            out[alive] = value(h).squeeze(-1)
        return out
