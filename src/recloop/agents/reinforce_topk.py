"""REINFORCE with top-K off-policy correction (Chen et al., "Top-K Off-Policy Correction for
a REINFORCE Recommender System", WSDM 2019), learned from logged trajectories.

The policy is a softmax over the catalogue given the state (a user embedding and the mean
embedding of the last N engaged items, through an MLP). Logged actions were chosen by
another policy, beta, which the model estimates with its own softmax head trained on the
same state *with the gradient blocked* (so fitting beta cannot bend the state towards the
logger). Each logged step's update is weighted by

* the capped importance weight ``min(pi(a|s) / beta(a|s), c)`` (variance control), and
* the top-K multiplier ``lambda_K = K (1 - pi(a|s))^(K - 1)``: a K-item slate contains ``a``
  with probability ``1 - (1 - pi)^K``, whose gradient is ``lambda_K`` times pi's; it keeps
  pushing items not yet near-certain into the top K instead of piling mass on one item.

Plain REINFORCE (``correction=False``) drops both factors: it imitates the logger's
choices weighted by their return. For large catalogues, ``sampled_softmax`` estimates both
softmaxes from a sample of items during training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from recloop.agents.base import Agent, Progress
from recloop.agents.datasets import Trajectories
from recloop.agents.embeddings import Embeddings
from recloop.agents.networks import LogitsScorer, Scorer, StateEncoder, trainable
from recloop.agents.training import require_catalogue, train


@dataclass
class ReinforceTopKConfig:
    embedding_dim: int = 32
    """Size of the user and item embeddings (that of pre-trained ones when given)."""
    freeze_embeddings: bool = False
    """With pre-trained embeddings: keep them fixed (True) or fine-tune them (False)."""
    hidden: int = 64
    """Width of the state MLP."""
    top_k: int = 10
    """K of the top-K correction (the slate size the policy serves)."""
    weight_cap: float = 1.0
    """c: importance weights pi/beta are capped at this. A small cap trades bias (towards
    the logger) for variance. Measured on the synthetic shop (3 seeds): c = 1 keeps next-item
    NDCG@10 above popularity (0.49-0.55 against 0.41-0.50) and still earns ~50% more
    interactive reward; c = 2 or more earns a little more interactively but falls below
    popularity on NDCG (the test set is the logger's own future). Under a strongly biased
    logger c = 10 pays (``benchmarks/agents_biased_logging.py``)."""
    gamma: float = 0.0
    """Discount of rewards within a session. 0 credits each shown item with its own reward
    only: when what is shown barely changes what the user does next, later rewards are
    noise for this action, and the importance weights multiply that noise."""
    learning_rate: float = 3e-3
    epochs: int = 12
    batch_size: int = 512
    sampled_softmax: int = 0
    """0: the exact softmax over the whole catalogue. S > 0: each batch estimates log pi and
    log beta of the logged items from S items drawn uniformly (:func:`sampled_log_prob`),
    for catalogues too large for an N-way softmax per step (serving stays exact). Measured on
    the shop (150 items, 2 seeds): plain REINFORCE keeps its next-item NDCG@10 at S = 20
    (0.52-0.53 either way); the corrected variant loses some (0.37-0.39 at S = 20, 0.41-0.46
    at S = 50, against 0.49 exact): its weights pi/beta are ratios of two sampled estimates,
    so it needs a larger S."""
    correction: bool = True
    """False: plain REINFORCE, no off-policy or top-K factor (the baseline)."""
    seed: int = 0


def topk_multiplier(pi: torch.Tensor, k: int) -> torch.Tensor:
    """lambda_K = K (1 - pi)^(K - 1): d/dpi of 1 - (1 - pi)^K."""
    return k * (1.0 - pi) ** (k - 1)


def capped_weight(pi: torch.Tensor, beta: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.clamp(pi / beta.clamp_min(1e-12), max=cap)


def discounted_returns(data: Trajectories, gamma: float) -> NDArray[np.float64]:
    """R_t = r_t + gamma R_{t+1} within each session (steps in time order)."""
    order = np.lexsort((data.timestamp, data.session))
    out = np.zeros(len(data))
    running = 0.0
    for pos in range(len(order) - 1, -1, -1):
        i = order[pos]
        last = pos == len(order) - 1 or data.session[order[pos + 1]] != data.session[i]
        running = data.reward[i] + (0.0 if last else gamma * running)
        out[i] = running
    return out


class PolicyNetwork(nn.Module):
    """The shared state, a policy head pi and a behaviour head beta over the catalogue."""

    def __init__(self, n_users: int, n_items: int, embedding_dim: int, hidden: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.encoder = StateEncoder(n_users, n_items, embedding_dim, hidden)
        self.pi_head = nn.Linear(hidden, n_items)
        self.beta_head = nn.Linear(hidden, n_items)


def sampled_log_prob(
    state: torch.Tensor, head: nn.Linear, action: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """log softmax(head(state))[action] with the partition over the *other* items estimated
    from ``negatives`` (S items drawn uniformly from all N, shared by the batch):
    E[(N / S) sum over sampled j != a of exp z_j] = sum over j != a of exp z_j. Costs S
    logits per row instead of N."""
    n_items, n_sampled = head.out_features, len(negatives)
    z_a = (head.weight[action] * state).sum(-1) + head.bias[action]
    z_neg = state @ head.weight[negatives].T + head.bias[negatives]
    z_neg = z_neg.masked_fill(negatives[None, :] == action[:, None], -torch.inf)
    others = torch.logsumexp(z_neg, dim=1) + math.log(n_items / n_sampled)
    return z_a - torch.logaddexp(z_a, others)


def action_log_probs(
    net: PolicyNetwork,
    user: torch.Tensor,
    history: torch.Tensor,
    action: torch.Tensor,
    sampled_softmax: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(a|s), log beta(a|s)) of the logged actions; beta sees the state through a
    blocked gradient (its loss must not move the shared encoder)."""
    s = net.encoder(user, history)
    if 0 < sampled_softmax < net.n_items:
        negatives = torch.randint(net.n_items, (sampled_softmax,))
        log_pi = sampled_log_prob(s, net.pi_head, action, negatives)
        return log_pi, sampled_log_prob(s.detach(), net.beta_head, action, negatives)
    log_pi = F.log_softmax(net.pi_head(s), dim=-1).gather(1, action[:, None]).squeeze(1)
    beta = F.log_softmax(net.beta_head(s.detach()), dim=-1).gather(1, action[:, None])
    return log_pi, beta.squeeze(1)


def losses(
    net: PolicyNetwork,
    user: torch.Tensor,
    history: torch.Tensor,
    action: torch.Tensor,
    ret: torch.Tensor,
    cfg: ReinforceTopKConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(policy loss, behaviour-policy loss) for one batch of logged steps."""
    log_pi, log_beta = action_log_probs(net, user, history, action, cfg.sampled_softmax)
    if cfg.correction:
        pi_a = log_pi.exp().detach()
        beta_a = log_beta.exp().detach()
        factor = capped_weight(pi_a, beta_a, cfg.weight_cap) * topk_multiplier(pi_a, cfg.top_k)
    else:
        factor = torch.ones_like(log_pi)
    policy_loss = -(factor * ret * log_pi).mean()
    beta_loss = -log_beta.mean()  # the cross-entropy of the logged actions
    return policy_loss, beta_loss


class ReinforceTopK(Agent):
    """Fit from trajectories; serve pi's logits."""

    algo = "reinforce-topk"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        cfg: ReinforceTopKConfig | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.cfg = cfg or ReinforceTopKConfig()
        if embeddings is not None:
            self.cfg = replace(self.cfg, embedding_dim=embeddings.dim)
        if not self.cfg.correction:
            self.algo = "reinforce"
        torch.manual_seed(self.cfg.seed)
        self.net = PolicyNetwork(n_users, n_items, self.cfg.embedding_dim, self.cfg.hidden)
        if embeddings is not None:
            self.net.encoder.load_pretrained(
                embeddings.users, embeddings.items, self.cfg.freeze_embeddings
            )
        self.n_users, self.n_items = n_users, n_items

    def fit(self, data: Trajectories, progress: Progress | None = None) -> list[float]:
        """Train on every logged step; the curve is the policy loss per epoch."""
        cfg = self.cfg
        require_catalogue(data, self.n_items)
        returns = torch.as_tensor(discounted_returns(data, cfg.gamma), dtype=torch.float32)
        user = torch.as_tensor(data.user)
        history = torch.as_tensor(data.history)
        action = torch.as_tensor(data.action)

        def batch_loss(b: torch.Tensor) -> tuple[torch.Tensor, float]:
            p_loss, b_loss = losses(self.net, user[b], history[b], action[b], returns[b], cfg)
            return p_loss + b_loss, float(p_loss.detach())

        return train(
            trainable(self.net),
            len(action),
            batch_loss,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            seed=cfg.seed,
            progress=progress,
        )

    def scorer(self) -> Scorer:
        return LogitsScorer(self.net.encoder, self.net.pi_head)

    def user_vectors(self) -> torch.Tensor:
        return self.net.encoder.user.weight.detach()
