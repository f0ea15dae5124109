"""Behaviour cloning, the supervised baseline: predict the next item a user engages with
(cross-entropy over the catalogue), from the same state as the RL agents."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recloop.agents.base import Agent, Progress
from recloop.agents.datasets import Trajectories
from recloop.agents.embeddings import Embeddings
from recloop.agents.networks import LogitsScorer, Scorer, StateEncoder, trainable
from recloop.agents.training import require_catalogue, train
from recloop.core.errors import InvalidInputError


@dataclass
class BCConfig:
    embedding_dim: int = 32
    """Size of the user and item embeddings (that of pre-trained ones when given)."""
    freeze_embeddings: bool = False
    """With pre-trained embeddings: keep them fixed (True) or fine-tune them (False)."""
    hidden: int = 64
    """Width of the state MLP."""
    learning_rate: float = 3e-3
    epochs: int = 5
    batch_size: int = 512
    seed: int = 0


class BehaviourCloning(Agent):
    algo = "bc"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        cfg: BCConfig | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.cfg = cfg or BCConfig()
        if embeddings is not None:
            self.cfg = replace(self.cfg, embedding_dim=embeddings.dim)
        torch.manual_seed(self.cfg.seed)
        self.encoder = StateEncoder(n_users, n_items, self.cfg.embedding_dim, self.cfg.hidden)
        self.head = nn.Linear(self.cfg.hidden, n_items)
        if embeddings is not None:
            self.encoder.load_pretrained(
                embeddings.users, embeddings.items, self.cfg.freeze_embeddings
            )
        self.n_users, self.n_items = n_users, n_items

    def fit(self, data: Trajectories, progress: Progress | None = None) -> list[float]:
        """Learn from the engaged steps only (reward > 0): what users went on to choose."""
        cfg = self.cfg
        require_catalogue(data, self.n_items)
        rows = np.flatnonzero(data.reward > 0)
        if len(rows) == 0:
            raise InvalidInputError("no engaged steps (reward > 0) to learn from")
        user = torch.as_tensor(data.user[rows])
        history = torch.as_tensor(data.history[rows])
        action = torch.as_tensor(data.action[rows])
        scorer = self.scorer()

        def batch_loss(b: torch.Tensor) -> tuple[torch.Tensor, float]:
            logits = self.head(self.encoder(user[b], history[b]))
            loss = F.cross_entropy(logits, action[b])
            return loss, float(loss.detach())

        return train(
            trainable(scorer),
            len(rows),
            batch_loss,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            seed=cfg.seed,
            progress=progress,
        )

    def scorer(self) -> Scorer:
        return LogitsScorer(self.encoder, self.head)

    def user_vectors(self) -> torch.Tensor:
        return self.encoder.user.weight.detach()
