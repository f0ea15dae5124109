"""Pre-trained user and item embeddings: matrix factorisation with the BPR loss.

Trained on the training split only (the caller passes it), from engaged steps: a user
should score an item they engaged with above a random item, weighted by the reward of the
engagement. Agents start from these vectors (``StateEncoder.load_pretrained``) frozen or
fine-tuned, and DDPG/BCQ act in the item space they define.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from recloop.agents.base import Progress
from recloop.agents.datasets import Trajectories
from recloop.agents.training import train
from recloop.core.errors import InvalidInputError


@dataclass
class EmbeddingConfig:
    dim: int = 32
    """Size of the user and item vectors."""
    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 1e-2
    l2: float = 1e-4
    """Weight decay on the vectors of each batch (keeps norms comparable)."""
    seed: int = 0


@dataclass(frozen=True)
class Embeddings:
    users: NDArray[np.float32]
    items: NDArray[np.float32]

    @property
    def dim(self) -> int:
        return int(self.items.shape[1])

    def check(self, n_users: int, n_items: int) -> None:
        """Refuse embeddings of another user set or catalogue, naming both sizes."""
        if self.items.shape[0] != n_items or self.users.shape[0] != n_users:
            raise InvalidInputError(
                f"embeddings cover {self.users.shape[0]} users and {self.items.shape[0]} "
                f"items; the agent has {n_users} and {n_items}"
            )


class MatrixFactorisation(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def score(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (self.user(user) * self.item(item)).sum(-1)
        return out


def bpr_loss(
    mf: MatrixFactorisation,
    user: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    weight: torch.Tensor,
    l2: float,
) -> torch.Tensor:
    """-log sigmoid(score(u, i+) - score(u, i-)), reward-weighted, plus L2 on the rows used."""
    margin = mf.score(user, positive) - mf.score(user, negative)
    vectors = mf.user(user).pow(2).sum(-1) + mf.item(positive).pow(2).sum(-1)
    loss: torch.Tensor = (weight * -F.logsigmoid(margin)).mean() + l2 * vectors.mean()
    return loss


def pretrain_embeddings(
    data: Trajectories, cfg: EmbeddingConfig | None = None, progress: Progress | None = None
) -> tuple[Embeddings, list[float]]:
    """Fit MF on the engaged steps of ``data``; (embeddings, loss per epoch)."""
    cfg = cfg or EmbeddingConfig()
    rows = np.flatnonzero(data.reward > 0)
    if len(rows) == 0:
        raise InvalidInputError("no engaged steps (reward > 0) to learn embeddings from")
    torch.manual_seed(cfg.seed)
    mf = MatrixFactorisation(data.n_users, data.n_items, cfg.dim)
    user = torch.as_tensor(data.user[rows])
    item = torch.as_tensor(data.action[rows])
    weight = torch.as_tensor(data.reward[rows], dtype=torch.float32)
    weight = weight / weight.mean()
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    def batch_loss(b: torch.Tensor) -> tuple[torch.Tensor, float]:
        negative = torch.randint(data.n_items, (len(b),), generator=gen)
        loss = bpr_loss(mf, user[b], item[b], negative, weight[b], cfg.l2)
        return loss, float(loss.detach())

    curve = train(
        mf.parameters(),
        len(rows),
        batch_loss,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        seed=cfg.seed,
        progress=progress,
    )
    users = mf.user.weight.detach().numpy().astype(np.float32)
    items = mf.item.weight.detach().numpy().astype(np.float32)
    return Embeddings(users, items), curve
