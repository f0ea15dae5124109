"""The score fusion the fusion DDPG learns to weight: ``click * (pay + a * phi)``.

It belongs to the agent (the shop simulator ranks with it as its baseline, and imports it
from here); torch-free, so the simulator does not load PyTorch for it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]

CLICK, PAY, PHI = 0, 1, 2
"""The columns of an item's features: predicted click, predicted pay, the extra signal."""


def fused_scores(item_features: Floats, a: float) -> Floats:
    """The shop's baseline ranker: ``click * (pay + a * phi)``."""
    f = item_features
    out: Floats = f[:, CLICK] * (f[:, PAY] + a * f[:, PHI])
    return out
