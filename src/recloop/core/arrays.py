"""Array type aliases, spelled once so every numpy version's stubs accept them."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
"""Scores and probabilities: one float per action."""
