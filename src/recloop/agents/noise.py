"""Exploration noise for continuous actions, seeded: independent Gaussian draws, or the
Ornstein-Uhlenbeck process of the DDPG paper (correlated in time, reverting to a mean).
DDPG adds it to an item-space action, score-fusion DDPG to its fusion weight."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


class GaussianNoise:
    """Independent N(0, sigma^2) in every coordinate at every step, seeded."""

    def __init__(self, dim: int, sigma: float = 0.1, seed: int = 0) -> None:
        self.dim, self.sigma = dim, sigma
        self.rng = np.random.default_rng(seed)

    def sample(self) -> NDArray[np.float64]:
        out: NDArray[np.float64] = self.sigma * self.rng.standard_normal(self.dim)
        return out

    def reset(self) -> None:
        """Nothing carries over between steps, so nothing to reset (the stream goes on)."""


class OrnsteinUhlenbeckNoise:
    """x <- x + theta (mu - x) dt + sigma sqrt(dt) N(0, I), seeded: noise correlated in time
    that reverts to ``mu`` (the DDPG paper's exploration), so consecutive recommendations in
    a session explore in a consistent direction. After t steps from x0 its mean is
    ``mu + (x0 - mu)(1 - theta dt)^t``; its stationary variance is
    ``sigma^2 dt / (1 - (1 - theta dt)^2)`` (about sigma^2 / (2 theta) for small dt).
    ``reset`` puts it back at ``mu`` for a new episode (session)."""

    def __init__(
        self,
        dim: int,
        mu: float = 0.0,
        theta: float = 0.15,
        sigma: float = 0.2,
        dt: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.dim, self.mu, self.theta, self.sigma, self.dt = dim, mu, theta, sigma, dt
        self.rng = np.random.default_rng(seed)
        self.state = np.full(dim, mu, dtype=np.float64)

    def sample(self) -> NDArray[np.float64]:
        drift = self.theta * (self.mu - self.state) * self.dt
        shock = self.sigma * np.sqrt(self.dt) * self.rng.standard_normal(self.dim)
        self.state = self.state + drift + shock
        return self.state.copy()

    def reset(self) -> None:
        self.state = np.full(self.dim, self.mu, dtype=np.float64)


Noise = GaussianNoise | OrnsteinUhlenbeckNoise
