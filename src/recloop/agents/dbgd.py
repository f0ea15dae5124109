"""Dueling Bandit Gradient Descent (Yue and Joachims, ICML 2009) as DRN uses it for online
exploration (Zheng et al., "DRN: A Deep Reinforcement Learning Framework for News
Recommendation", WWW 2018), with probabilistic interleaving (Hofmann, Whiteson and de Rijke,
CIKM 2011) to compare the two rankers on live traffic.

At each request: perturb the current network's weights, ``W~ = W + alpha * rand(-1, 1) * W``
(elementwise, so each weight moves by at most ``alpha`` of its own size); rank the
candidates with both; merge the two lists by probabilistic interleaving, remembering which
list contributed each shown item; after the user's clicks, if the exploration list's items
won, move ``W`` towards ``W~`` by ``eta``: ``W <- W + eta (W~ - W)``. Pure functions on
tensors and NumPy, seeded: the agent (``agents/drn.py``) calls them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

EXPLOIT, EXPLORE = 0, 1
"""Which list an interleaved item came from."""


@torch.no_grad()
def perturb_into(
    explore: nn.Module, net: nn.Module, alpha: float, generator: torch.Generator
) -> nn.Module:
    """``W~ = W + alpha * U(-1, 1) * W`` for every parameter, written into ``explore`` (a
    module of the same shape, reused request after request: no copy to allocate)."""
    for w_explore, w in zip(explore.parameters(), net.parameters(), strict=True):
        noise = torch.rand(w.shape, generator=generator) * 2.0 - 1.0
        w_explore.copy_(w).addcmul_(noise, w, value=alpha)
    return explore


def perturbed_copy(net: nn.Module, alpha: float, generator: torch.Generator) -> nn.Module:
    """The same as a new module."""
    return perturb_into(copy.deepcopy(net), net, alpha, generator)


@torch.no_grad()
def move_towards(net: nn.Module, explore: nn.Module, eta: float) -> None:
    """``W <- W + eta (W~ - W)``: the exploration network won; step part of the way to it."""
    for w, w_explore in zip(net.parameters(), explore.parameters(), strict=True):
        w.add_(eta * (w_explore - w))


def rank_probabilities(n: int, tau: float) -> NDArray[np.float64]:
    """P(pick the item at rank r) proportional to 1 / r^tau (r = 1..n): probabilistic
    interleaving's softened version of "take the top remaining item"."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** tau
    out: NDArray[np.float64] = weights / weights.sum()
    return out


@dataclass(frozen=True, slots=True)
class Interleaving:
    items: list[int]
    """The shown list, best slot first."""
    source: list[int]
    """For each shown item, the list that contributed it (:data:`EXPLOIT` or :data:`EXPLORE`)."""


def interleave(
    exploit: Sequence[int],
    explore: Sequence[int],
    k: int,
    rng: np.random.Generator,
    tau: float = 3.0,
) -> Interleaving:
    """Probabilistic interleaving of two rankings of the same candidates into ``k`` slots:
    for each slot a fair coin picks a list, that list's remaining items are drawn with
    probability ``~ 1 / rank^tau`` (ranks among its items not yet shown), and the item is
    removed from both lists."""
    lists = [list(exploit), list(explore)]
    if set(lists[0]) != set(lists[1]):
        raise ValueError("both rankings must order the same candidates")
    shown: list[int] = []
    source: list[int] = []
    taken: set[int] = set()
    for _ in range(min(k, len(lists[0]))):
        which = int(rng.integers(2))
        remaining = [i for i in lists[which] if i not in taken]
        pick = remaining[int(rng.choice(len(remaining), p=rank_probabilities(len(remaining), tau)))]
        shown.append(pick)
        source.append(which)
        taken.add(pick)
    return Interleaving(shown, source)


def credit(interleaving: Interleaving, clicks: Sequence[float]) -> int:
    """The winner of one comparison: the list whose contributed items got more clicks
    (:data:`EXPLORE` only when it got strictly more: a tie keeps the current network)."""
    if len(clicks) != len(interleaving.items):
        raise ValueError("one click value per shown item")
    won = np.zeros(2)
    for source, clicked in zip(interleaving.source, clicks, strict=True):
        won[source] += clicked
    return EXPLORE if won[EXPLORE] > won[EXPLOIT] else EXPLOIT
