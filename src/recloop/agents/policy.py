"""A saved agent served as a recloop Policy: scores a candidate list for a context.

The context names the user (``user_id``) and their recent items (``recent_items``, oldest
first -- what the stream's user state provides); candidates are actions whose ids are item
ids. Unknown users get the mean user vector; unknown items score below every known one.
So an agent ranks in the decision loop, is logged with its exploration probabilities, and
can be a candidate for off-policy evaluation like any bandit, with no special case.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recloop.agents.checkpoint import SavedAgent, load_agent
from recloop.core.arrays import FloatArray
from recloop.core.types import Action, Context


class AgentPolicy:
    def __init__(self, saved: SavedAgent, name: str | None = None, version: str = "1") -> None:
        self.saved = saved
        self.users = {u: i for i, u in enumerate(saved.user_ids)}
        self.items = {it: i for i, it in enumerate(saved.item_ids)}
        self.pad = len(self.items)
        self.last_n = saved.last_n
        self.unknown_user = saved.user_vectors.mean(dim=0, keepdim=True)
        self.name = name or saved.algo
        self.version = version

    @classmethod
    def from_bytes(cls, blob: bytes, version: str = "1", name: str | None = None) -> AgentPolicy:
        return cls(load_agent(blob), name=name, version=version)

    def state(self, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vector, history) for this context: the mean user vector for an unknown
        user, unknown recent items left out."""
        recent = [self.items[i] for i in context.get("recent_items", ()) if i in self.items]
        recent = recent[-self.last_n :]
        history = torch.full((1, self.last_n), self.pad, dtype=torch.long)
        if recent:
            history[0, -len(recent) :] = torch.tensor(recent)
        user = self.users.get(str(context.get("user_id", "")))
        vector = self.unknown_user if user is None else self.saved.user_vectors[user : user + 1]
        return vector, history

    def catalogue_scores(self, context: Context) -> torch.Tensor:
        """Scores of every catalogue item for this context (the whole-catalogue top-K)."""
        return self.saved.scores(*self.state(context))[0]

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        """Only the known candidates are scored (their cost, not the catalogue's); unknown
        ones score below every known one."""
        index = np.asarray([self.items.get(a.id, -1) for a in actions], dtype=np.int64)
        known = index >= 0
        out: FloatArray = np.zeros(len(actions))
        if known.any():
            items = torch.as_tensor(index[known])[None, :]
            got = self.saved.candidate_scores(*self.state(context), items)[0]
            out[known] = got.numpy().astype(np.float64)
            out[~known] = out[known].min() - 1.0
        return out
