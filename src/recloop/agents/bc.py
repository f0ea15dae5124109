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
        if data.n_items != self.n_items:
            raise ValueError(f"data has {data.n_items} items; the model has {self.n_items}")
        rows = np.flatnonzero(data.reward > 0)
        if len(rows) == 0:
            raise ValueError("no engaged steps (reward > 0) to learn from")
        user = torch.as_tensor(data.user[rows])
        history = torch.as_tensor(data.history[rows])
        action = torch.as_tensor(data.action[rows])
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate)
        gen = torch.Generator().manual_seed(cfg.seed)
        curve = []
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(rows), generator=gen)
            total = 0.0
            for start in range(0, len(perm), cfg.batch_size):
                b = perm[start : start + cfg.batch_size]
                logits = self.net.pi_head(self.net.encode(user[b], history[b]))
                loss = F.cross_entropy(logits, action[b])
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += float(loss.detach()) * len(b)
            curve.append(total / len(perm))
            if progress is not None:
                progress(epoch, curve[-1])
        return curve

    @torch.no_grad()
    def rank(
        self, user: NDArray[np.int64], history: NDArray[np.int64], k: int = 10
    ) -> NDArray[np.int64]:
        logits = self.net.pi_head(self.net.encode(torch.as_tensor(user), torch.as_tensor(history)))
        out: NDArray[np.int64] = torch.topk(logits, k, dim=-1).indices.numpy()
        return out
