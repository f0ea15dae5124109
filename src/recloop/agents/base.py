"""What every deep RL agent offers: fit from trajectories, then rank through its scorer.

An agent trains whatever networks its algorithm needs, but serves through one *scorer*
(``forward(user_vectors, history) -> scores over the catalogue``) and a table of user
vectors; ``agents/checkpoint.py`` exports exactly those, so a saved agent loads and serves
without its training code, and offline ranking metrics see what serving will do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from recloop.agents.datasets import Trajectories
from recloop.agents.networks import Scorer, top_k

Progress = Callable[[int, float], None]
"""(epoch, figure of that epoch) -> None, called after each epoch."""


class Ranker(Protocol):
    """What evaluation needs: a trained agent, or a saved one loaded for serving."""

    @property
    def n_items(self) -> int: ...

    def rank(
        self,
        user: NDArray[np.int64],
        history: NDArray[np.int64],
        k: int = 10,
        exclude_history: bool = False,
    ) -> NDArray[np.int64]: ...


class Agent:
    algo: str = ""
    """The algorithm's name as ``recloop train --algo`` spells it."""
    cfg: Any
    """The algorithm's hyperparameter dataclass."""
    n_users: int
    n_items: int

    def fit(self, data: Trajectories, progress: Progress | None = None) -> list[float]:
        """Train on logged steps; the learning curve is one figure per epoch."""
        raise NotImplementedError

    def scorer(self) -> Scorer:
        """The module serving uses: (user vectors, history) -> (rows, items) scores."""
        raise NotImplementedError

    def user_vectors(self) -> torch.Tensor:
        """(users, dim) vectors the scorer takes, one per known user."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        return asdict(self.cfg)

    @torch.no_grad()
    def rank(
        self,
        user: NDArray[np.int64],
        history: NDArray[np.int64],
        k: int = 10,
        exclude_history: bool = False,
    ) -> NDArray[np.int64]:
        """Top-k item indices per row, exactly as the exported scorer ranks them."""
        h = torch.as_tensor(history)
        scores = self.scorer()(self.user_vectors()[torch.as_tensor(user)], h)
        return top_k(scores, h, k, exclude_history)
