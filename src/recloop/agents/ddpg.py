"""Deep Deterministic Policy Gradient (DDPG; Lillicrap et al., "Continuous control with deep
reinforcement learning", ICLR 2016) for recommendation, learned offline from logged
trajectories, with the behaviour-cloning regulariser of TD3+BC (Fujimoto and Gu, "A
Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021).

Why DDPG: a catalogue is a large discrete action set, but its items live in an embedding
space where similar items are close. DDPG acts in that continuous space instead (as in
Dulac-Arnold et al., "Deep RL in Large Discrete Action Spaces", 2015): the *actor* mu(s)
outputs one point of item-embedding space and serving ranks every item by its similarity to
that point (``a . v_i``), so one forward pass scores the whole catalogue. The *critic*
Q(s, a) rates a state and an action vector, and the actor climbs Q's gradient with respect
to the action (the deterministic policy gradient).

* The action space is the pre-trained item vectors (MF/BPR, ``agents/embeddings.py``),
  frozen and normalised into the unit ball (:func:`normalise_items`); the actor's output is
  kept in that ball (:func:`into_ball`). A logged action is the logged item's vector.
* The state comes from a :class:`StateEncoder` (the user's vector and the mean vector of the
  last N engaged items, through an MLP); the actor and the critic each have their own.
* The critic learns from *every* logged step, skips included (reward 0 says "not this item
  here", which behaviour cloning throws away), towards the TD target
  ``r + gamma (1 - done) Q'(s', mu'(s'))`` of slowly moving *target networks*
  (:func:`soft_update`: theta' <- tau theta + (1 - tau) theta'). It sees the action through
  the concatenation *and* an elementwise product with a projection of the state: "how well
  does this item match this user" is a bilinear interaction, which a small ReLU MLP on the
  concatenation alone learns poorly (its ranking of items was then worse than the MF vectors
  it started from).
* Offline, nothing in the log contradicts the critic where the logger never acted, so a pure
  DDPG actor drifts to actions the critic merely guesses are good (extrapolation error). The
  TD3+BC actor loss keeps it near what users engaged with:
  ``-lambda Q(s, mu(s)) / mean|Q|  +  |mu(s) - a_logged|^2`` (the second term on engaged
  steps only); dividing Q by its mean magnitude makes ``lambda`` a scale-free trade-off. On
  the synthetic shop, lambda = 0 (behaviour cloning in item space) ranks the logger's next
  item well but earns less interactively; a large lambda earns as much interactively but
  its ranking leaves the logged data (next-item NDCG falls below popularity); 2.5 (the
  paper's value) keeps both.
* Online, exploration adds noise to the actor's output (:class:`GaussianNoise`, or the
  temporally correlated :class:`OrnsteinUhlenbeckNoise` of the DDPG paper): :meth:`DDPG.act`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from recloop.agents.base import Agent, Progress
from recloop.agents.datasets import Trajectories
from recloop.agents.embeddings import EmbeddingConfig, Embeddings, pretrain_embeddings
from recloop.agents.networks import (
    Scorer,
    StateEncoder,
    dot_candidates,
    mlp,
    soft_update,
    trainable,
)
from recloop.agents.noise import Noise
from recloop.agents.training import require_catalogue, run_epochs


@dataclass
class DDPGConfig:
    embedding_dim: int = 32
    """Size of the item (action) and user vectors (that of pre-trained ones when given)."""
    embedding_epochs: int = 10
    """Epochs of MF/BPR pre-training when no embeddings are given."""
    freeze_embeddings: bool = True
    """Keep the state encoders' user and item vectors fixed too (the action space always is)."""
    hidden: int = 64
    """Width of the state MLPs and of the critic's hidden layer."""
    gamma: float = 0.3
    """Discount of rewards within a session. Small: in the synthetic shop what is shown does
    not change the user's tastes, only the history the state sees, so later rewards are
    mostly noise for this action (0.3 earned more interactively than 0.5 or 0.9; 0, a
    contextual bandit, a little more still)."""
    tau: float = 0.005
    """Soft target update rate: target <- tau online + (1 - tau) target, after every batch."""
    bc_lambda: float = 2.5
    """lambda of TD3+BC: weight of the normalised Q term against the behaviour-cloning term
    in the actor loss (0: behaviour cloning in item space; large: plain DDPG)."""
    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    epochs: int = 8
    batch_size: int = 256
    seed: int = 0


# -- the mathematics -----------------------------------------------------------------------


def td_target(
    reward: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor, gamma: float
) -> torch.Tensor:
    """r + gamma (1 - done) Q'(s', mu'(s')): no bootstrapping past a session's end."""
    return reward + gamma * (1.0 - done.float()) * next_q


def normalise_items(items: NDArray[np.float32]) -> tuple[torch.Tensor, float]:
    """Centre the item vectors and divide them all by one number, the largest norm, so every
    item lies in the unit ball; returns (table, scale). One scale for all (not unit vectors
    each) keeps MF's geometry: the norms, which carry popularity, and every ranking by
    ``a . v`` (centring adds the same ``-a . mean`` to every item's score). The actor's range
    is then that ball: it cannot leave the region the catalogue spans, and the actor's and
    the critic's inputs are of order one."""
    table = torch.as_tensor(items, dtype=torch.float32)
    table = table - table.mean(0, keepdim=True)
    scale = float(table.norm(dim=1).max().clamp_min(1e-12))
    return table / scale, scale


def into_ball(x: torch.Tensor) -> torch.Tensor:
    """Squash each row smoothly into the open unit ball, direction kept: x tanh|x| / |x|."""
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    out: torch.Tensor = x * (torch.tanh(norm) / norm)
    return out


def clip_to_ball(x: torch.Tensor) -> torch.Tensor:
    """Rows longer than 1 shortened to length 1; the others left as they are."""
    out: torch.Tensor = x / x.norm(dim=-1, keepdim=True).clamp_min(1.0)
    return out


# -- the networks --------------------------------------------------------------------------


class Actor(nn.Module):
    """mu(s): state -> a point of the item space's unit ball."""

    def __init__(self, encoder: StateEncoder, action_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.hidden, action_dim)

    def from_vectors(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return into_ball(self.head(self.encoder.from_vectors(user_vectors, history)))

    def forward(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.from_vectors(self.encoder.user(user), history)


class Critic(nn.Module):
    """Q(s, a) -> (rows,): an MLP on [h(s), a, P h(s) * a], h the state's encoding."""

    def __init__(self, encoder: StateEncoder, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.project = nn.Linear(encoder.hidden, action_dim)
        self.q = mlp([encoder.hidden + 2 * action_dim, hidden, 1])

    def forward(
        self, user: torch.Tensor, history: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        h = self.encoder(user, history)
        out: torch.Tensor = self.q(torch.cat([h, action, self.project(h) * action], -1))
        return out.squeeze(-1)


class DDPGScorer(Scorer):
    """Serving: every item scores its vector's dot product with the actor's output
    (plain tensor ops, exportable)."""

    items: torch.Tensor

    def __init__(self, actor: Actor, items: torch.Tensor) -> None:
        super().__init__()
        self.actor = actor
        self.register_buffer("items", items)

    def forward(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.actor.from_vectors(user_vectors, history) @ self.items.T
        return out

    def candidates(
        self, user_vectors: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        return dot_candidates(self.actor.from_vectors(user_vectors, history), self.items, items)


class DDPGNetworks(nn.Module):
    """Actor and critic, and their target copies (never trained, only soft-updated)."""

    def __init__(self, n_users: int, n_items: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.actor = Actor(StateEncoder(n_users, n_items, dim, hidden), dim)
        self.critic = Critic(StateEncoder(n_users, n_items, dim, hidden), dim, hidden)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def load_pretrained(
        self, users: NDArray[np.float32], items: NDArray[np.float32], freeze: bool
    ) -> None:
        """Both encoders start from these vectors; the targets start as exact copies."""
        self.actor.encoder.load_pretrained(users, items, freeze)
        self.critic.encoder.load_pretrained(users, items, freeze)
        soft_update(self.actor_target, self.actor, 1.0)
        soft_update(self.critic_target, self.critic, 1.0)


# -- the update step -----------------------------------------------------------------------


@dataclass
class Batch:
    user: torch.Tensor
    history: torch.Tensor
    action: torch.Tensor
    """(rows, dim): the logged items' vectors."""
    reward: torch.Tensor
    next_history: torch.Tensor
    done: torch.Tensor
    engaged: torch.Tensor
    """(rows,) 1.0 where the user engaged (reward > 0): the behaviour-cloning rows."""

    def take(self, rows: torch.Tensor) -> Batch:
        return Batch(*(getattr(self, f.name)[rows] for f in fields(self)))


def critic_loss(nets: DDPGNetworks, batch: Batch, gamma: float) -> torch.Tensor:
    """MSE of Q(s, a_logged) against the target networks' TD target."""
    with torch.no_grad():
        next_action = nets.actor_target(batch.user, batch.next_history)
        next_q = nets.critic_target(batch.user, batch.next_history, next_action)
        target = td_target(batch.reward, batch.done, next_q, gamma)
    return F.mse_loss(nets.critic(batch.user, batch.history, batch.action), target)


def actor_loss(nets: DDPGNetworks, batch: Batch, bc_lambda: float) -> torch.Tensor:
    """TD3+BC: -lambda Q(s, mu(s)) / mean|Q| + mean over engaged rows of |mu(s) - a|^2."""
    action = nets.actor(batch.user, batch.history)
    q = nets.critic(batch.user, batch.history, action)
    q_term = -bc_lambda * q.mean() / q.abs().mean().detach().clamp_min(1e-6)
    squared = (action - batch.action).pow(2).sum(-1)
    bc_term = (squared * batch.engaged).sum() / batch.engaged.sum().clamp_min(1.0)
    out: torch.Tensor = q_term + bc_term
    return out


def update(
    nets: DDPGNetworks, opts: dict[str, torch.optim.Optimizer], batch: Batch, cfg: DDPGConfig
) -> dict[str, float]:
    """One DDPG step: the critic towards its TD target, the actor up the critic, then the
    targets follow."""
    c_loss = critic_loss(nets, batch, cfg.gamma)
    opts["critic"].zero_grad()
    c_loss.backward()  # type: ignore[no-untyped-call]
    opts["critic"].step()
    a_loss = actor_loss(nets, batch, cfg.bc_lambda)
    opts["actor"].zero_grad()
    # this also leaves gradients in the critic: its next zero_grad clears them
    a_loss.backward()  # type: ignore[no-untyped-call]
    opts["actor"].step()
    soft_update(nets.critic_target, nets.critic, cfg.tau)
    soft_update(nets.actor_target, nets.actor, cfg.tau)
    return {"critic": c_loss.item(), "actor": a_loss.item()}


# -- the agent -----------------------------------------------------------------------------


class DDPG(Agent):
    """Fit from logged trajectories in a frozen item space; serve through :class:`DDPGScorer`."""

    algo = "ddpg"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        cfg: DDPGConfig | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.cfg = cfg = cfg or DDPGConfig()
        if embeddings is not None:
            self.cfg = cfg = replace(cfg, embedding_dim=embeddings.dim)
        self.n_users, self.n_items = n_users, n_items
        self.embeddings = embeddings
        torch.manual_seed(cfg.seed)
        self.nets = DDPGNetworks(n_users, n_items, cfg.embedding_dim, cfg.hidden)
        self.items = torch.zeros(n_items, cfg.embedding_dim)
        """The action space: the normalised, frozen item vectors (rows of the scorer)."""
        if embeddings is not None:
            self._use_embeddings(embeddings)
        self.losses: dict[str, list[float]] = {"critic": [], "actor": []}
        """Per-epoch mean of each loss (``fit`` returns the critic's)."""

    def _use_embeddings(self, embeddings: Embeddings) -> None:
        embeddings.check(self.n_users, self.n_items)
        self.items, scale = normalise_items(embeddings.items)
        users = (embeddings.users / scale).astype(np.float32)  # on the items' scale
        self.nets.load_pretrained(users, self.items.numpy(), self.cfg.freeze_embeddings)

    def fit(self, data: Trajectories, progress: Progress | None = None) -> list[float]:
        """Train on every logged step; the curve is the critic's TD loss per epoch."""
        cfg = self.cfg
        require_catalogue(data, self.n_items)
        if self.embeddings is None:
            emb_cfg = EmbeddingConfig(
                dim=cfg.embedding_dim, epochs=cfg.embedding_epochs, seed=cfg.seed
            )
            self.embeddings, _ = pretrain_embeddings(data, emb_cfg)
            self._use_embeddings(self.embeddings)
        torch.manual_seed(cfg.seed)
        steps = Batch(
            user=torch.as_tensor(data.user),
            history=torch.as_tensor(data.history),
            action=self.items[torch.as_tensor(data.action)],
            reward=torch.as_tensor(data.reward, dtype=torch.float32),
            next_history=torch.as_tensor(data.next_history),
            done=torch.as_tensor(data.done, dtype=torch.float32),
            engaged=torch.as_tensor(data.reward > 0, dtype=torch.float32),
        )
        nets = self.nets
        opts: dict[str, torch.optim.Optimizer] = {
            "critic": torch.optim.Adam(trainable(nets.critic), lr=cfg.critic_learning_rate),
            "actor": torch.optim.Adam(trainable(nets.actor), lr=cfg.actor_learning_rate),
        }
        run_epochs(
            len(data),
            lambda rows: update(nets, opts, steps.take(rows), cfg),
            self.losses,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            report="critic",
            progress=progress,
        )
        return list(self.losses["critic"])

    @torch.no_grad()
    def act(
        self, user: NDArray[np.int64], history: NDArray[np.int64], noise: Noise | None = None
    ) -> torch.Tensor:
        """(rows, dim) actions for online use: mu(s) plus one noise draw per row, clipped to
        the unit ball. Items rank by ``action @ agent.items.T``, as the scorer ranks them."""
        action: torch.Tensor = self.nets.actor(torch.as_tensor(user), torch.as_tensor(history))
        if noise is None:
            return action
        draws = np.stack([noise.sample() for _ in range(len(action))])
        return clip_to_ball(action + torch.as_tensor(draws, dtype=torch.float32))

    def scorer(self) -> Scorer:
        return DDPGScorer(self.nets.actor, self.items)

    def user_vectors(self) -> torch.Tensor:
        return self.nets.actor.encoder.user.weight.detach()
