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
    """BPR matrix factorisation; with ``content`` (one row of item features per item, as
    the feature generator makes them), an item's vector is its id vector plus a learned
    projection of its content, and id vectors start at zero: an item no one has engaged
    with yet still gets a vector, from what it is (cold start)."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, content: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.id_vectors = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        self.content: torch.Tensor | None = None
        self.project: nn.Linear | None = None
        if content is None:
            nn.init.normal_(self.id_vectors.weight, std=0.1)
        else:
            if content.shape[0] != n_items:
                raise InvalidInputError(
                    f"item content has {content.shape[0]} rows; the log has {n_items} items"
                )
            nn.init.zeros_(self.id_vectors.weight)
            self.content = content
            self.project = nn.Linear(content.shape[1], dim, bias=False)

    def item(self, item: torch.Tensor) -> torch.Tensor:
        vectors: torch.Tensor = self.id_vectors(item)
        if self.project is not None and self.content is not None:
            vectors = vectors + self.project(self.content[item])
        return vectors

    def all_items(self) -> torch.Tensor:
        return self.item(torch.arange(self.id_vectors.num_embeddings))

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
    data: Trajectories,
    cfg: EmbeddingConfig | None = None,
    progress: Progress | None = None,
    item_content: NDArray[np.float32] | None = None,
) -> tuple[Embeddings, list[float]]:
    """Fit MF on the engaged steps of ``data``; (embeddings, loss per epoch).

    ``item_content``: (n_items, d) item features (``recloop.features.vectors``): items are
    then placed by their content too, so items absent from ``data`` get useful vectors."""
    cfg = cfg or EmbeddingConfig()
    rows = np.flatnonzero(data.reward > 0)
    if len(rows) == 0:
        raise InvalidInputError("no engaged steps (reward > 0) to learn embeddings from")
    torch.manual_seed(cfg.seed)
    content = None if item_content is None else torch.as_tensor(item_content, dtype=torch.float32)
    mf = MatrixFactorisation(data.n_users, data.n_items, cfg.dim, content)
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
    with torch.no_grad():
        items = mf.all_items().numpy().astype(np.float32)
    return Embeddings(users, items), curve
