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


StepFigures = Callable[[torch.Tensor], dict[str, float]]
"""row indices -> one update on those rows, returning each loss's figure for the batch."""


def run_epochs(
    n_rows: int,
    step: StepFigures,
    curves: dict[str, list[float]],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    report: str,
    progress: Callable[[int, float], None] | None = None,
) -> None:
    """Shuffled, seeded minibatches: ``step`` updates on each batch (one optimiser or an
    actor-critic's several); the per-epoch mean of each figure is appended to ``curves``
    (one list per figure), and ``progress`` gets the ``report`` figure of each epoch."""
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm = torch.randperm(n_rows, generator=gen)
        totals = dict.fromkeys(curves, 0.0)
        for start in range(0, n_rows, batch_size):
            rows = perm[start : start + batch_size]
            for key, value in step(rows).items():
                totals[key] += value * len(rows)
        for key in curves:
            curves[key].append(totals[key] / n_rows)
        if progress is not None:
            progress(epoch, curves[report][-1])


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
    """Adam on one loss; the curve is the mean of its reported figure per epoch."""
    opt = torch.optim.Adam(parameters, lr=learning_rate)

    def step(rows: torch.Tensor) -> dict[str, float]:
        loss, figure = batch_loss(rows)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        return {"loss": figure}

    curves: dict[str, list[float]] = {"loss": []}
    run_epochs(
        n_rows,
        step,
        curves,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        report="loss",
        progress=progress,
    )
    return curves["loss"]
