"""A shop of single decisions for the loop's score-fusion learner (``learner = "fusion"``).

Each request offers candidates that carry a baseline ranker's predictions as features
(``click``, ``pay``, ``phi``: the names the fusion policy reads by default). Users in a
hurry value an item's margin ``phi`` at 3 times its purchase probability ``pay``; bargain
hunters at 0.3. A request's value for the item shown first is ``click * (pay + v * phi)``
with the user's own ``v``, so ranking by ``click * (pay + a * phi)`` earns most with
``a = v``: 3 for the first kind, 0.3 for the second. The context says which kind
(``hurry``), so a weight per context can beat any single weight. Items' ``pay`` and ``phi``
pull apart (a premium item sells less), so the weight decides which item leads.

Unlike :mod:`recloop.simulators.fusion_shop` (slates, sampled clicks and purchases, for
the simulator agent), this one speaks the loop's JSON: contexts are mappings and
candidates are ``Action`` objects; the reward is the expected value (noise-free).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from recloop.core.arrays import FloatArray
from recloop.core.protocols import Policy
from recloop.core.types import Action, Context


class WeightShop:
    VALUE_OF_PHI: ClassVar[dict[bool, float]] = {True: 3.0, False: 0.3}

    def __init__(self, seed: int, candidates: int = 10) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = candidates

    def context(self) -> dict[str, Any]:
        hurry = bool(self.rng.random() < 0.5)
        return {"user_id": f"u{int(self.rng.integers(1000))}", "hurry": 1.0 if hurry else 0.0}

    def actions(self) -> list[Action]:
        f = self.rng.random((self.n, 3)) * [0.3, 0.5, 0.5]
        f[:, 2] = np.clip(0.5 - f[:, 1] + 0.05 * self.rng.standard_normal(self.n), 0, 0.5)
        return [
            Action(f"i{j}", {"click": float(c), "pay": float(p), "phi": float(q)})
            for j, (c, p, q) in enumerate(f)
        ]

    def value(self, context: Context, action: Action) -> float:
        f = action.features
        phi_value = self.VALUE_OF_PHI[context["hurry"] == 1.0]
        return float(f["click"] * (f["pay"] + phi_value * f["phi"]))


class FixedWeight:
    """The strongest simple baseline: one fusion weight for everyone."""

    name = "fixed-weight"
    version = "fixed"

    def __init__(self, a: float) -> None:
        self.a = a

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        f = np.array([[x.features["click"], x.features["pay"], x.features["phi"]] for x in actions])
        out: FloatArray = f[:, 0] * (f[:, 1] + self.a * f[:, 2])
        return out


def greedy_value(policy: Policy, seed: int = 99, requests: int = 2000) -> float:
    """What ``policy`` earns per request when its top-scored candidate is shown."""
    shop = WeightShop(seed)
    total = 0.0
    for _ in range(requests):
        ctx, acts = shop.context(), shop.actions()
        total += shop.value(ctx, acts[int(np.argmax(policy.scores(ctx, acts)))])
    return total / requests


def best_single_weight(grid: Sequence[float], seed: int = 99) -> tuple[float, float]:
    """(value, weight) of the best :class:`FixedWeight` on ``grid``."""
    return max((greedy_value(FixedWeight(a), seed), a) for a in grid)


def oracle_value(seed: int = 99, requests: int = 2000) -> float:
    """Showing each request's best item."""
    shop = WeightShop(seed)
    total = 0.0
    for _ in range(requests):
        ctx, acts = shop.context(), shop.actions()
        total += max(shop.value(ctx, a) for a in acts)
    return total / requests
