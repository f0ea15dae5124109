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
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

EXPLOIT, EXPLORE = 0, 1
"""Which list an interleaved item came from."""


class Twins:
    """W and W~ side by side in one ``(2, n)`` buffer, so that a request's perturbation is a
    few tensor operations rather than three per parameter, and both networks score the
    candidates in one batched pass (:meth:`forward`): DBGD's per-request cost, halved.

    Row 0 is a copy of ``net``'s weights taken at :meth:`perturb`, row 1 is W~; ``explore``
    is a module whose parameters are views of row 1 (what :func:`move_towards` steps to)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.explore = copy.deepcopy(net).requires_grad_(False)
        sizes = [(name, w.shape, w.numel()) for name, w in net.named_parameters()]
        self.buffer = torch.zeros(2, sum(size for _, _, size in sizes))
        self.stacked: dict[str, torch.Tensor] = {}
        """Parameter name -> ``(2, *shape)`` view of both networks' values."""
        offset = 0
        for name, shape, size in sizes:
            self.stacked[name] = self.buffer[:, offset : offset + size].view(2, *shape)
            offset += size
        for name, w_explore in self.explore.named_parameters():
            w_explore.data = self.stacked[name][1]

    @torch.no_grad()
    def perturb(self, alpha: float, generator: torch.Generator) -> nn.Module:
        """Copy W into row 0 and write ``W~ = W + alpha * U(-1, 1) * W`` into row 1."""
        torch.cat([w.reshape(-1) for w in self.net.parameters()], out=self.buffer[0])
        factors = torch.rand(self.buffer.shape[1], generator=generator)  # U(0, 1) per weight
        factors.mul_(2.0 * alpha).add_(1.0 - alpha)  # 1 + alpha * U(-1, 1)
        torch.mul(self.buffer[0], factors, out=self.buffer[1])
        return self.explore

    @torch.no_grad()
    def forward(self, layers: nn.Sequential, prefix: str, x: torch.Tensor) -> torch.Tensor:
        """``layers`` (a submodule of ``net`` named ``prefix``: Linear layers and elementwise
        activations) applied to ``x`` (m, d) by both networks at once -> (2, m, out)."""
        h = x.expand(2, *x.shape)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Linear):
                weight = self.stacked[f"{prefix}.{i}.weight"]
                bias = self.stacked[f"{prefix}.{i}.bias"]
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            else:
                h = layer(h)
        return h


def perturbed_copy(net: nn.Module, alpha: float, generator: torch.Generator) -> nn.Module:
    """``W~`` of ``net`` as a module of its own (``net`` is left as it is), drawn as
    :meth:`Twins.perturb` draws it."""
    return Twins(net).perturb(alpha, generator)


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


@functools.lru_cache(maxsize=1024)
def _rank_cdf(n: int, tau: float) -> NDArray[np.float64]:
    """The cumulative :func:`rank_probabilities`, normalised as ``Generator.choice`` does."""
    cdf = rank_probabilities(n, tau).cumsum()
    cdf /= cdf[-1]
    cdf.flags.writeable = False
    return cdf


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
        # rng.choice(len(remaining), p=rank_probabilities(...)) draw for draw, without its
        # checks of p (most of a request's interleaving time)
        drawn = _rank_cdf(len(remaining), tau).searchsorted(rng.random(), side="right")
        pick = remaining[int(drawn)]
        shown.append(pick)
        source.append(which)
        taken.add(pick)
    return Interleaving(shown, source)


def lead_probabilities(
    exploit: Sequence[int], explore: Sequence[int], tau: float = 3.0
) -> NDArray[np.float64]:
    """P(candidate i leads the interleaved list) for :func:`interleave` of these rankings
    (indexed by candidate, 0..n-1): a fair coin picks a list, then rank r of it with
    probability ``~ 1 / r^tau``. Exact; what a decision served by interleaving logs."""
    n = len(exploit)
    by_rank = rank_probabilities(n, tau)
    out = np.zeros(n)
    out[np.asarray(exploit, dtype=np.int64)] += 0.5 * by_rank
    out[np.asarray(explore, dtype=np.int64)] += 0.5 * by_rank
    return out


def credit(interleaving: Interleaving, clicks: Sequence[float]) -> int:
    """The winner of one comparison: the list whose contributed items got more clicks
    (:data:`EXPLORE` only when it got strictly more: a tie keeps the current network)."""
    if len(clicks) != len(interleaving.items):
        raise ValueError("one click value per shown item")
    won = np.zeros(2)
    for source, clicked in zip(interleaving.source, clicks, strict=True):
        won[source] += clicked
    return EXPLORE if won[EXPLORE] > won[EXPLOIT] else EXPLOIT
