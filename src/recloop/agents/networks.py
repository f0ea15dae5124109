"""Networks every agent shares: the state encoder and the item scorers that serving uses.

A state is a user embedding and the mean embedding of the user's last N engaged items,
through a small MLP. A *scorer* maps (user vectors, history) to one score per catalogue
item; it is what an agent exports for serving (see ``agents/checkpoint.py``), so it takes
user *vectors* (a stand-in can be given for an unknown user) rather than user indices.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from recloop.core.errors import InvalidInputError


def mlp(sizes: Sequence[int], out_activation: nn.Module | None = None) -> nn.Sequential:
    """Linear layers with ReLU between them (and ``out_activation`` after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


class StateEncoder(nn.Module):
    """(user, last N engaged items) -> state vector of size ``hidden``."""

    def __init__(self, n_users: int, n_items: int, embedding_dim: int, hidden: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.user = nn.Embedding(n_users, embedding_dim)
        self.item = nn.Embedding(n_items + 1, embedding_dim, padding_idx=n_items)
        self.mlp = mlp([2 * embedding_dim, hidden, hidden])

    def forward(self, user: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.from_vectors(self.user(user), history)

    def history_mean(self, history: torch.Tensor) -> torch.Tensor:
        """Mean embedding of the history's items, padding left out (zeros if empty)."""
        mask = (history != self.n_items).float().unsqueeze(-1)
        out: torch.Tensor = (self.item(history) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return out

    def from_vectors(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(torch.cat([user_vectors, self.history_mean(history)], -1))
        return out

    def load_pretrained(
        self, users: NDArray[np.float32], items: NDArray[np.float32], freeze: bool
    ) -> None:
        """Start from pre-trained embeddings (``agents/embeddings.py``); ``freeze`` keeps
        them fixed while the agent trains."""
        want = (self.user.num_embeddings, self.item.num_embeddings - 1, self.embedding_dim)
        got = (users.shape[0], items.shape[0], items.shape[1])
        if users.shape[1] != items.shape[1] or got != want:
            raise InvalidInputError(
                f"pre-trained embeddings are {users.shape[0]} users x {users.shape[1]} and "
                f"{items.shape[0]} items x {items.shape[1]}; the agent needs {want[0]} users, "
                f"{want[1]} items, dimension {want[2]}"
            )
        with torch.no_grad():
            self.user.weight.copy_(torch.as_tensor(users))
            self.item.weight[: self.n_items].copy_(torch.as_tensor(items))
            self.item.weight[self.n_items].zero_()
        self.user.weight.requires_grad_(not freeze)
        self.item.weight.requires_grad_(not freeze)


def dot_candidates(vectors: torch.Tensor, table: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(rows, C) scores ``vectors[r] . table[items[r, c]]``: a catalogue scorer's scores of
    just the given items, without computing the rest of the catalogue."""
    out: torch.Tensor = (table[items] @ vectors.unsqueeze(-1)).squeeze(-1)
    return out


class Scorer(nn.Module):
    """What an agent serves through: scores over the whole catalogue, or of given items."""

    def forward(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """(rows, n_items) scores."""
        raise NotImplementedError

    def candidates(
        self, user_vectors: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """(rows, C) scores of ``items`` (rows, C): the catalogue's scores at them."""
        raise NotImplementedError


class LogitsScorer(Scorer):
    """Scores are a linear head's logits over the catalogue (REINFORCE, BC)."""

    def __init__(self, encoder: StateEncoder, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder.from_vectors(user_vectors, history))
        return out

    def candidates(
        self, user_vectors: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """The logits of ``items`` (rows, C) only: the head's rows for them."""
        state = self.encoder.from_vectors(user_vectors, history)
        return dot_candidates(state, self.head.weight, items) + self.head.bias[items]


class CandidateScorer(nn.Module):
    """Serving a candidate list: ``(user vectors, history, items) -> (rows, C)`` scores, the
    same as the catalogue scorer's at those items. Exported next to the catalogue scorer
    (``agents/checkpoint.py``): at 100k items it costs what 100 items cost."""

    def __init__(self, scorer: Scorer) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(
        self, user_vectors: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        return self.scorer.candidates(user_vectors, history, items)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta' <- tau theta + (1 - tau) theta', parameter by parameter (Polyak averaging):
    how DDPG's and BCQ's target networks follow the trained ones."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(s, alpha=tau)


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should move (frozen embeddings left out)."""
    return [p for p in module.parameters() if p.requires_grad]


@torch.no_grad()
def top_k(
    scores: torch.Tensor, history: torch.Tensor, k: int, exclude_history: bool
) -> NDArray[np.int64]:
    """Top-k item indices per row of (rows, items) scores, optionally without the history."""
    n_items = scores.shape[1]
    if exclude_history:
        scores = scores.clone()
        valid = history != n_items
        rows = torch.arange(len(history))[:, None].expand_as(history)
        scores[rows[valid], history[valid]] = -torch.inf
    out: NDArray[np.int64] = torch.topk(scores, min(k, n_items), dim=-1).indices.numpy()
    return out
