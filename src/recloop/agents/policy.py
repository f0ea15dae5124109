"""A trained agent served as a recloop Policy: scores a candidate list for a context.

The context names the user (``user_id``) and their recent items (``recent_items``, oldest
first -- what the stream's user state provides); candidates are actions whose ids are item
ids. Unknown users get the mean user embedding; unknown items score below every known one.
So an agent ranks in the decision loop, is logged with its exploration probabilities, and
can be a candidate for off-policy evaluation like any bandit, with no special case.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recloop.agents.reinforce_topk import PolicyNetwork
from recloop.core.arrays import FloatArray
from recloop.core.types import Action, Context


class AgentPolicy:
    def __init__(
        self,
        net: PolicyNetwork,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        last_n: int = 10,
        name: str = "agent",
        version: str = "1",
    ) -> None:
        if len(item_ids) != net.n_items:
            raise ValueError(
                f"the network knows {net.n_items} items but {len(item_ids)} item ids were given"
            )
        self.net = net.eval()
        self.users = {u: i for i, u in enumerate(user_ids)}
        self.items = {it: i for i, it in enumerate(item_ids)}
        self.last_n = last_n
        self.name = name
        self.version = version

    @torch.no_grad()
    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        pad = self.net.n_items
        recent = [self.items[i] for i in context.get("recent_items", ()) if i in self.items]
        history = torch.full((1, self.last_n), pad, dtype=torch.long)
        recent = recent[-self.last_n :]
        if recent:
            history[0, -len(recent) :] = torch.tensor(recent)
        user = self.users.get(str(context.get("user_id", "")))
        if user is None:
            user_vec = self.net.user.weight.mean(dim=0, keepdim=True)
        else:
            user_vec = self.net.user(torch.tensor([user]))
        logits = self.net.pi_head(self.net.encode_vectors(user_vec, history))[0]
        known = [self.items.get(a.id) for a in actions]
        out = np.empty(len(actions))
        floor = float(logits.min()) - 1.0
        for k, index in enumerate(known):
            out[k] = float(logits[index]) if index is not None else floor
        return out
