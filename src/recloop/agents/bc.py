"""Behaviour cloning, the supervised baseline: predict the next item a user engages with
(cross-entropy over the catalogue), from the same state as the RL agents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F

from recloop.agents.datasets import Trajectories
from recloop.agents.reinforce_topk import PolicyNetwork, ReinforceTopKConfig
from recloop.agents.training import require_catalogue, train


@dataclass
class BCConfig:
    embedding_dim: int = 32
    """Size of the user and item embeddings."""
    hidden: int = 64
    """Width of the state MLP."""
    learning_rate: float = 3e-3
    epochs: int = 5
    batch_size: int = 512
    seed: int = 0


class BehaviourCloning:
    def __init__(self, n_users: int, n_items: int, cfg: BCConfig | None = None) -> None:
        self.cfg = cfg or BCConfig()
        torch.manual_seed(self.cfg.seed)
        shape = ReinforceTopKConfig(embedding_dim=self.cfg.embedding_dim, hidden=self.cfg.hidden)
        self.net = PolicyNetwork(n_users, n_items, shape)
        self.n_items = n_items

    def fit(
        self, data: Trajectories, progress: Callable[[int, float], None] | None = None
    ) -> list[float]:
        """Learn from the engaged steps only (reward > 0): what users went on to choose."""
        cfg = self.cfg
        require_catalogue(data, self.n_items)
        rows = np.flatnonzero(data.reward > 0)
        if len(rows) == 0:
            raise ValueError("no engaged steps (reward > 0) to learn from")
        user = torch.as_tensor(data.user[rows])
        history = torch.as_tensor(data.history[rows])
        action = torch.as_tensor(data.action[rows])

        def batch_loss(b: torch.Tensor) -> tuple[torch.Tensor, float]:
            loss = F.cross_entropy(self.net.policy_logits(user[b], history[b]), action[b])
            return loss, float(loss.detach())

        return train(
            self.net.parameters(),
            len(rows),
            batch_loss,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            seed=cfg.seed,
            progress=progress,
        )

    @torch.no_grad()
    def rank(
        self, user: NDArray[np.int64], history: NDArray[np.int64], k: int = 10
    ) -> NDArray[np.int64]:
        logits = self.net.policy_logits(torch.as_tensor(user), torch.as_tensor(history))
        out: NDArray[np.int64] = torch.topk(logits, k, dim=-1).indices.numpy()
        return out
