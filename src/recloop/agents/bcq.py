"""Batch-Constrained deep Q-learning (BCQ; Fujimoto, Meger and Precup, "Off-Policy Deep
Reinforcement Learning without Exploration", ICML 2019), learned from logged trajectories.

Why: a critic trained only on logs guesses the value of actions the logger never took, and
nothing in the data corrects those guesses; a policy that maximises such a critic walks
straight into them (*extrapolation error*). BCQ only ever acts near what the logger did:

* a conditional VAE ``G(a | s)`` of the logged actions: decoding latents clipped to
  [-0.5, 0.5] (its likely region) proposes actions the logger would plausibly take;
* a perturbation network ``xi(s, a) = phi * max_action * tanh(.)`` nudges each proposal
  towards higher value, at most ``phi * max_action`` per coordinate, so it stays close;
* twin critics ``Q1, Q2`` with slowly-moving target copies; the TD target takes
  ``lam * min + (1 - lam) * max`` of the two target critics (a soft clipped double Q that
  penalises actions the critics disagree on), maximised over ``n`` perturbed proposals for
  the next state;
* acting: propose ``n`` actions, perturb them, keep the one ``Q1`` rates highest.

Here an action is a point in a frozen item-embedding space (pre-trained MF/BPR vectors,
``agents/embeddings.py``; see :func:`normalise_items`): the logged action is the logged
item's vector, and serving scores every item ``i`` by ``a . v_i`` -- MF's own similarity
(it scores a user ``u`` by ``u . v_i``), which on the held-out next item ranks far better
than the nearest neighbours of ``a`` by distance. The state is the user's vector and the mean
vector of their last N engaged items, from the same frozen space, so the networks see fixed
features and only BCQ's own four networks train.

Serving must be deterministic and exportable (``agents/checkpoint.py``), so the latents are
drawn once, seeded, and kept in the scorer as a buffer: the scorer holds the item table, the
decoder, the perturbation net, Q1 and those fixed latents, and nothing random.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from recloop.agents.base import Agent, Progress
from recloop.agents.datasets import Trajectories
from recloop.agents.embeddings import EmbeddingConfig, Embeddings, pretrain_embeddings
from recloop.agents.networks import Scorer, dot_candidates, mlp, soft_update
from recloop.agents.training import require_catalogue, run_epochs


@dataclass
class BCQConfig:
    embedding_dim: int = 32
    """Size of the item (action) and user vectors when the agent pre-trains them itself."""
    embedding_epochs: int = 10
    """Epochs of MF/BPR pre-training when no embeddings are given."""
    hidden: int = 128
    """Width of the two hidden layers of every network."""
    latent_dim: int | None = None
    """Size of the VAE's latent; None: twice the action dimension (the paper's choice)."""
    kl_weight: float = 0.5
    """Weight of the KL term in the VAE loss (the paper's 0.5)."""
    phi: float = 0.05
    """The perturbation moves each coordinate by at most ``phi * max_action`` (paper: 0.05)."""
    lam: float = 0.75
    """Weight of the min in the target: ``lam * min + (1 - lam) * max`` of the twin critics."""
    n_candidates: int = 10
    """Actions proposed (and perturbed) per state, for the TD target and for acting."""
    gamma: float = 0.9
    """Discount of rewards within a session."""
    tau: float = 0.005
    """Soft target update rate: ``target <- tau * online + (1 - tau) * target``, every batch."""
    learning_rate: float = 1e-3
    """Adam's step size, for the VAE, the critics and the perturbation network alike."""
    epochs: int = 5
    """Passes over the logged steps."""
    batch_size: int = 256
    """Logged steps per update."""
    seed: int = 0
    """Seeds the networks, the batches, MF pre-training and the serving latents."""


# -- the mathematics ------------------------------------------------------------------------


def clipped_double_q(q1: torch.Tensor, q2: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * min(Q1, Q2) + (1 - lam) * max(Q1, Q2)``; lam = 1 is TD3's clipped double Q."""
    return lam * torch.minimum(q1, q2) + (1.0 - lam) * torch.maximum(q1, q2)


def sample_latent(
    n: int, latent_dim: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Latents for *proposing* actions: N(0, I) clipped to [-0.5, 0.5], as in the paper, so
    proposals come from the VAE's likely region rather than its tails."""
    return torch.randn(n, latent_dim, generator=generator).clamp(-0.5, 0.5)


def normalise_items(items: NDArray[np.float32]) -> tuple[torch.Tensor, float]:
    """The action space: item vectors centred, then all divided by one scale, their largest
    coordinate, so every logged action lies in [-1, 1]^d (max_action = 1). The decoder's tanh
    can then reach each of them and ``phi`` is a fraction of the action range, as in the
    paper. Centring removes the direction every item shares (so ``a . v`` measures what is
    particular to an item); one scale for all coordinates, not one each, keeps MF's geometry.
    Returns (table, scale)."""
    table = torch.as_tensor(items, dtype=torch.float32)
    table = table - table.mean(0, keepdim=True)
    scale = float(table.abs().max().clamp_min(1e-12))
    return table / scale, scale


# -- the networks ---------------------------------------------------------------------------


class ActionSpace(nn.Module):
    """The frozen item table: the state from (user vector, history), scores from an action."""

    table: torch.Tensor

    def __init__(self, items: torch.Tensor) -> None:
        super().__init__()
        n_items, dim = items.shape
        self.n_items = int(n_items)
        self.register_buffer("table", torch.cat([items, torch.zeros(1, dim)]))  # + padding row

    def state(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """[user vector, mean vector of the history's items] (padding left out)."""
        mask = (history != self.n_items).float().unsqueeze(-1)
        mean = (self.table[history] * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return torch.cat([user_vectors, mean], -1)

    def scores(self, action: torch.Tensor) -> torch.Tensor:
        """(rows, items): ``a . v_i`` for every item."""
        return action @ self.table[: self.n_items].T


class Decoder(nn.Module):
    """The VAE's decoder: (s, z) -> a = max_action * tanh(.)."""

    def __init__(
        self, state_dim: int, action_dim: int, latent_dim: int, hidden: int, max_action: float
    ) -> None:
        super().__init__()
        self.max_action = max_action
        self.net = mlp([state_dim + latent_dim, hidden, hidden, action_dim], nn.Tanh())

    def forward(self, state: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.max_action * self.net(torch.cat([state, z], -1))
        return out


class VAE(nn.Module):
    """Conditional VAE G(a | s) of the logged actions."""

    def __init__(
        self, state_dim: int, action_dim: int, latent_dim: int, hidden: int, max_action: float
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp([state_dim + action_dim, hidden, hidden], nn.ReLU())
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_std = nn.Linear(hidden, latent_dim)
        self.decoder = Decoder(state_dim, action_dim, latent_dim, hidden, max_action)

    def forward(
        self, state: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, mean, std), z = mean + std * noise (reparameterisation)."""
        h = self.encoder(torch.cat([state, action], -1))
        mean = self.mean(h)
        std = self.log_std(h).clamp(-4.0, 15.0).exp()  # the paper's clamp
        z = mean + std * torch.randn_like(std)
        return self.decoder(state, z), mean, std

    def propose(self, state: torch.Tensor) -> torch.Tensor:
        """One sampled action per state, latent clipped (see :func:`sample_latent`)."""
        out: torch.Tensor = self.decoder(state, sample_latent(len(state), self.latent_dim))
        return out


class Perturbation(nn.Module):
    """``xi(s, a) = phi * max_action * tanh(.)``; the actor's action is ``a + xi`` kept in the
    action box, so it is within ``phi * max_action`` of ``a`` in every coordinate."""

    def __init__(
        self, state_dim: int, action_dim: int, hidden: int, phi: float, max_action: float
    ) -> None:
        super().__init__()
        self.phi, self.max_action = phi, max_action
        self.net = mlp([state_dim + action_dim, hidden, hidden, action_dim], nn.Tanh())

    def xi(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.phi * self.max_action * self.net(torch.cat([state, action], -1))
        return out

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (action + self.xi(state, action)).clamp(-self.max_action, self.max_action)


class QNetwork(nn.Module):
    """Q(s, a) -> (rows,)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = mlp([state_dim + action_dim, hidden, hidden, 1])

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(torch.cat([state, action], -1)).squeeze(-1)
        return out


class TwinCritic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.q1 = QNetwork(state_dim, action_dim, hidden)
        self.q2 = QNetwork(state_dim, action_dim, hidden)

    def forward(
        self, state: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(state, action), self.q2(state, action)


class BCQScorer(Scorer):
    """Serving: ``n`` proposals decoded from the fixed latents, perturbed, the one with the
    highest Q1 kept; every item scored against it. Deterministic plain tensor ops."""

    z: torch.Tensor

    def __init__(
        self,
        space: ActionSpace,
        decoder: Decoder,
        actor: Perturbation,
        q1: QNetwork,
        z: torch.Tensor,
    ) -> None:
        super().__init__()
        self.space, self.decoder, self.actor, self.q1 = space, decoder, actor, q1
        self.register_buffer("z", z)

    def act(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """(rows, action_dim): the action chosen for each state."""
        state = self.space.state(user_vectors, history)
        n, latent_dim = self.z.shape
        s = state.unsqueeze(1).expand(-1, n, -1).reshape(-1, state.shape[-1])
        z = self.z.unsqueeze(0).expand(state.shape[0], -1, -1).reshape(-1, latent_dim)
        flat: torch.Tensor = self.actor(s, self.decoder(s, z))  # (rows * n, action_dim)
        q = self.q1(s, flat).reshape(-1, n)
        candidates = flat.reshape(q.shape[0], n, -1)
        best = q.argmax(1)[:, None, None].expand(-1, 1, candidates.shape[-1])
        return candidates.gather(1, best).squeeze(1)  # the proposal Q1 rates highest

    def forward(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.space.scores(self.act(user_vectors, history))

    def candidates(
        self, user_vectors: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        table = self.space.table[: self.space.n_items]
        return dot_candidates(self.act(user_vectors, history), table, items)


# -- the update step ------------------------------------------------------------------------


@dataclass
class Batch:
    """Logged steps as tensors, states already features of the frozen space."""

    state: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_state: torch.Tensor
    not_done: torch.Tensor

    def take(self, rows: torch.Tensor) -> Batch:
        return Batch(
            self.state[rows],
            self.action[rows],
            self.reward[rows],
            self.next_state[rows],
            self.not_done[rows],
        )


class BCQNetworks(nn.Module):
    """Everything BCQ trains, with the target copies of the perturbation net and critics."""

    def __init__(
        self, state_dim: int, action_dim: int, cfg: BCQConfig, max_action: float = 1.0
    ) -> None:
        super().__init__()
        latent_dim = cfg.latent_dim or 2 * action_dim
        self.vae = VAE(state_dim, action_dim, latent_dim, cfg.hidden, max_action)
        self.actor = Perturbation(state_dim, action_dim, cfg.hidden, cfg.phi, max_action)
        self.critic = TwinCritic(state_dim, action_dim, cfg.hidden)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)


def vae_loss(vae: VAE, state: torch.Tensor, action: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Reconstruction (MSE) + kl_weight * KL(N(mean, std^2) || N(0, I))."""
    recon, mean, std = vae(state, action)
    kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
    loss: torch.Tensor = F.mse_loss(recon, action) + kl_weight * kl
    return loss


@torch.no_grad()
def td_target(nets: BCQNetworks, batch: Batch, cfg: BCQConfig) -> torch.Tensor:
    """``r + gamma * (1 - done) * max over n proposals for s' of the soft clipped double Q``."""
    n = cfg.n_candidates
    s2 = batch.next_state.repeat_interleave(n, 0)
    a2 = nets.actor_target(s2, nets.vae.propose(s2))
    q1, q2 = nets.critic_target(s2, a2)
    best = clipped_double_q(q1, q2, cfg.lam).reshape(-1, n).max(1).values
    return batch.reward + batch.not_done * cfg.gamma * best


def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]
    opt.step()


def update(
    nets: BCQNetworks, opts: dict[str, torch.optim.Optimizer], batch: Batch, cfg: BCQConfig
) -> dict[str, float]:
    """One BCQ step (the paper's Algorithm 1): VAE, critics, perturbation, then targets."""
    s, a = batch.state, batch.action
    # 1. the generative model of the logged actions
    g_loss = vae_loss(nets.vae, s, a, cfg.kl_weight)
    step(opts["vae"], g_loss)
    # 2. the twin critics, towards the soft clipped double Q target
    target = td_target(nets, batch, cfg)
    q1, q2 = nets.critic(s, a)
    c_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
    step(opts["critic"], c_loss)
    # 3. the perturbation: maximise Q1 of perturbed proposals (only the actor steps; the
    #    gradient it leaves on Q1 is cleared before the critics' next step)
    proposals = nets.vae.propose(s).detach()
    a_loss = -nets.critic.q1(s, nets.actor(s, proposals)).mean()
    step(opts["actor"], a_loss)
    # 4. the targets follow slowly
    soft_update(nets.critic_target, nets.critic, cfg.tau)
    soft_update(nets.actor_target, nets.actor, cfg.tau)
    return {"vae": g_loss.item(), "critic": c_loss.item(), "actor": a_loss.item()}


# -- the agent ------------------------------------------------------------------------------


class BCQ(Agent):
    """Fit from logged trajectories in a frozen item space; serve through :class:`BCQScorer`.

    ``embeddings``: pre-trained user and item vectors to act among; None pre-trains them
    (MF/BPR) on the data given to the first :meth:`fit`.
    """

    algo = "bcq"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        cfg: BCQConfig | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.cfg = cfg = cfg or BCQConfig()
        self.n_users, self.n_items = n_users, n_items
        self.embeddings = embeddings
        dim = embeddings.dim if embeddings is not None else cfg.embedding_dim
        self.space = ActionSpace(torch.zeros(n_items, dim))
        self.users = torch.zeros(n_users, dim)
        if embeddings is not None:
            self._use(embeddings)
        torch.manual_seed(cfg.seed)
        self.nets = BCQNetworks(2 * dim, dim, cfg)
        generator = torch.Generator().manual_seed(cfg.seed)
        self.z = sample_latent(cfg.n_candidates, self.nets.vae.latent_dim, generator)
        """The serving latents, drawn once: the scorer is deterministic."""
        self.losses: dict[str, list[float]] = {"vae": [], "critic": [], "actor": []}
        """Per-epoch mean of each loss (``fit`` returns the critics')."""

    def _use(self, embeddings: Embeddings) -> None:
        embeddings.check(self.n_users, self.n_items)
        items, scale = normalise_items(embeddings.items)
        self.space.table[: self.n_items] = items
        # users on the items' scale: state features of comparable size
        self.users = torch.as_tensor(embeddings.users, dtype=torch.float32) / scale

    def fit(self, data: Trajectories, progress: Progress | None = None) -> list[float]:
        """Train on every logged step; the curve is the critics' TD loss per epoch."""
        cfg = self.cfg
        require_catalogue(data, self.n_items)
        if self.embeddings is None:
            emb = EmbeddingConfig(dim=cfg.embedding_dim, epochs=cfg.embedding_epochs, seed=cfg.seed)
            self.embeddings, _ = pretrain_embeddings(data, emb)
            self._use(self.embeddings)
        torch.manual_seed(cfg.seed)
        user = self.users[torch.as_tensor(data.user)]
        steps = Batch(
            state=self.space.state(user, torch.as_tensor(data.history)),
            action=self.space.table[torch.as_tensor(data.action)],
            reward=torch.as_tensor(data.reward, dtype=torch.float32),
            next_state=self.space.state(user, torch.as_tensor(data.next_history)),
            not_done=torch.as_tensor(~data.done, dtype=torch.float32),
        )
        nets = self.nets
        opts: dict[str, torch.optim.Optimizer] = {
            "vae": torch.optim.Adam(nets.vae.parameters(), lr=cfg.learning_rate),
            "critic": torch.optim.Adam(nets.critic.parameters(), lr=cfg.learning_rate),
            "actor": torch.optim.Adam(nets.actor.parameters(), lr=cfg.learning_rate),
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
        return self.losses["critic"][-cfg.epochs :] if cfg.epochs else []

    def scorer(self) -> Scorer:
        return BCQScorer(
            self.space, self.nets.vae.decoder, self.nets.actor, self.nets.critic.q1, self.z
        )

    def user_vectors(self) -> torch.Tensor:
        return self.users
