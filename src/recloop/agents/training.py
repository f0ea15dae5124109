"""The minibatch loop every agent trains with: Adam over shuffled rows, seeded, with the
mean of a per-batch figure per epoch (the learning curve)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from recloop.agents.datasets import Trajectories
from recloop.core.errors import InvalidInputError

BatchLoss = Callable[[torch.Tensor], tuple[torch.Tensor, float]]
"""row indices -> (the loss to minimise, the figure to report for this batch)."""


def require_catalogue(data: Trajectories, n_items: int) -> None:
    if data.n_items != n_items:
        raise InvalidInputError(f"data has {data.n_items} items; the model was built for {n_items}")


def train(
    parameters: Iterable[torch.nn.Parameter],
    n_rows: int,
    batch_loss: BatchLoss,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    opt = torch.optim.Adam(parameters, lr=learning_rate)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for epoch in range(epochs):
        perm = torch.randperm(n_rows, generator=gen)
        total = 0.0
        for start in range(0, n_rows, batch_size):
            rows = perm[start : start + batch_size]
            loss, figure = batch_loss(rows)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += figure * len(rows)
        curve.append(total / n_rows)
        if progress is not None:
            progress(epoch, curve[-1])
    return curve
