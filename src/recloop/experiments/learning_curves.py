"""Learning curves of rankers judged in a simulator: the reward of the i-th user of a run
(averaged over the runs, smoothed), one line per ranker, so that how fast an agent learns
shows beside where it ends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def smoothed(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` users (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    out = [
        (sums[i + 1] - sums[max(0, i + 1 - window)]) / min(i + 1, window)
        for i in range(len(values))
    ]
    return [float(v) for v in out]


def plot_learning_curves(env: str, rows: Sequence[dict[str, Any]], path: Path) -> None:
    """One PNG: each row's ``per_user_curve``, smoothed over a tenth of the users."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for row in rows:
        curve = row["per_user_curve"]
        ax.plot(smoothed(curve, max(1, len(curve) // 10)), label=row["policy"])
    ax.set_xlabel("user (in the order they arrive)")
    ax.set_ylabel("reward per user (mean over runs, smoothed)")
    ax.set_title(f"{env}: learning online from scratch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
