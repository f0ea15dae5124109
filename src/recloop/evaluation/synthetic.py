"""Synthetic logged bandit feedback with known ground truth, for testing estimators.

Contexts are Gaussian; each action has a hidden linear reward model squashed into a click
probability, so the true value of any policy is computable. The logging policy is a softmax
over the true expected rewards with inverse temperature ``logging_beta`` (0 = uniform;
large = nearly greedy; negative = prefers the worst actions), mixed with ``logging_epsilon`` uniform
exploration so every action keeps some probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recloop.evaluation.logdata import BanditData

Array = NDArray[np.float64]


def softmax(scores: Array, beta: float) -> Array:
    z = beta * (scores - scores.max(axis=1, keepdims=True))
    e = np.exp(z)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


@dataclass(frozen=True, slots=True)
class SyntheticBandit:
    """A fixed world (the hidden reward model) from which logs and truths are drawn."""

    n_actions: int = 10
    dim: int = 5
    seed: int = 0
    logging_beta: float = 1.0
    logging_epsilon: float = 0.1
    base_logit: float = -1.5
    """Shifts every action's reward logit: -1.5 gives click rates around 0.2."""

    def _weights(self) -> tuple[Array, Array]:
        rng = np.random.default_rng([self.seed, 0])
        theta = rng.normal(size=(self.dim, self.n_actions))
        bias = rng.normal(scale=0.5, size=self.n_actions)
        return theta, bias

    def contexts(self, n: int, stream: int) -> Array:
        return np.random.default_rng([self.seed, 1, stream]).normal(size=(n, self.dim))

    def expected_reward(self, x: Array) -> Array:
        """True P(reward = 1 | x, a) for every action, shape (n, A)."""
        theta, bias = self._weights()
        out: Array = 1.0 / (1.0 + np.exp(-(x @ theta + bias + self.base_logit)))
        return out

    def logging_policy(self, q: Array) -> Array:
        eps = self.logging_epsilon
        return (1.0 - eps) * softmax(q, self.logging_beta) + eps / self.n_actions

    def log(self, n: int, stream: int = 0) -> tuple[BanditData, Array]:
        """A logged sample of ``n`` rows, and the true expected rewards q(x_i, a)."""
        x = self.contexts(n, stream)
        q = self.expected_reward(x)
        probs = self.logging_policy(q)
        rng = np.random.default_rng([self.seed, 2, stream])
        u = rng.random(n)[:, None]
        action = np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), self.n_actions - 1)
        rows = np.arange(n)
        reward = (rng.random(n) < q[rows, action]).astype(np.float64)
        data = BanditData(
            action=action.astype(np.int64),
            reward=reward,
            pscore=probs[rows, action],
            n_actions=self.n_actions,
            context=x,
            context_names=tuple(f"x_{j}" for j in range(self.dim)),
        )
        return data, q

    def true_value(self, policy: Evaluation, n: int = 1_000_000) -> float:
        """The policy's expected reward over the context distribution (fresh contexts)."""
        total = 0.0
        chunk = 200_000
        for start in range(0, n, chunk):
            x = self.contexts(min(chunk, n - start), stream=10_000 + start // chunk)
            q = self.expected_reward(x)
            total += float(np.einsum("ij,ij->", policy.probabilities(x, q), q))
        return total / n


@dataclass(frozen=True, slots=True)
class Evaluation:
    """An evaluation policy for the synthetic world: softmax over a *noisy* view of the
    true rewards (so it is neither the logger nor the oracle)."""

    beta: float = 5.0
    noise: float = 0.3
    seed: int = 99

    def probabilities(self, x: Array, q: Array) -> Array:
        rng = np.random.default_rng(self.seed)
        dim, n_actions = x.shape[1], q.shape[1]
        distortion = rng.normal(scale=self.noise, size=(dim, n_actions))
        return softmax(q + x @ distortion * 0.1, self.beta)
