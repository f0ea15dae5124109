"""User activeness as DRN defines it (Zheng et al., WWW 2018, section 4.3): a survival model
of the user's return. Activeness starts at S0 at the first visit and decays with a constant
hazard, ``S(t) = S * exp(-lambda0 t)``; each return adds Sa (capped at 1). Users who come back
often stay near 1; users who drift away decay towards 0. The stream keeps it per user
(``streaming/state.py``), the simulators use it for their users, and DRN adds ``beta *
activeness`` to its reward. Pure functions of floats."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Activeness:
    start: float = 0.5
    """S0: activeness at a user's first visit (DRN's value)."""
    return_boost: float = 0.32
    """Sa: added at each return (DRN's value)."""
    decay_per_second: float = 1.2e-5
    """lambda0: the constant hazard rate (DRN's value, per second: a half-life of ~16 h)."""

    def decayed(self, value: float, elapsed_seconds: float) -> float:
        """Activeness ``elapsed_seconds`` after it was ``value``, with no return between."""
        return value * math.exp(-self.decay_per_second * max(0.0, elapsed_seconds))

    def after_return(self, value: float, gap_seconds: float) -> float:
        """Activeness right after the user returns ``gap_seconds`` after it was ``value``."""
        return min(1.0, self.decayed(value, gap_seconds) + self.return_boost)
