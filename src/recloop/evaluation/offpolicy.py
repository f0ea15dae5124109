"""Off-policy estimators: how would an evaluation policy have done on this log?

Every estimator is a small class with ``estimate(data, action_dist, estimated_rewards)``
and ``interval(..., alpha, n_bootstrap, seed)``. They differ only in their per-row terms
(see :mod:`recloop.evaluation.terms`), which are vectorised NumPy over all rows.

``action_dist`` is the evaluation policy's probability of each action for each row, shape
``(n, A)``, or ``(n, A, L)`` with positions (the probability of putting action ``a`` at slot
``l``: position is part of the context). ``estimated_rewards`` (a reward model's ``q(x, a)``,
same shape) is needed by DM and the doubly robust family; see
:mod:`recloop.evaluation.reward_model` for cross-fitted ones. Switch-DR and DR-OS, which
tune a weight-reshaping hyperparameter, are in :mod:`recloop.evaluation.tuned_dr`; estimators
by name and several run on one log at once, in :mod:`recloop.evaluation.estimators`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from recloop.core.errors import InvalidInputError
from recloop.evaluation.logdata import BanditData
from recloop.evaluation.terms import Interval, Terms, TermSums, bootstrap_interval

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the estimators read, computed once per (log, policy, reward model)."""

    reward: Array
    weight: Array
    """Importance weight of the logged action: pi(a_i | x_i) / p_log(a_i | x_i)."""
    q_logged: Array | None
    """The reward model's q(x_i, a_i) for the logged action."""
    dm: Array | None
    """The reward model's value of the evaluation policy at row i: sum_a pi(a|x_i) q(x_i, a)."""
    position: NDArray[np.int64] | None

    @property
    def n(self) -> int:
        return len(self.reward)


def _slot(dist: Array, data: BanditData, what: str) -> Array:
    """Reduce an (n, A[, L]) array to (n, A) at each row's logged position."""
    n = data.n_rows
    if dist.ndim == 2:
        if data.position is not None and data.len_list > 1:
            raise InvalidInputError(
                f"the log has positions: {what} must have shape (rows, actions, positions)"
            )
        return dist
    if dist.ndim != 3:
        raise InvalidInputError(f"{what} must have 2 or 3 dimensions, not {dist.ndim}")
    position = data.position if data.position is not None else np.zeros(n, dtype=np.int64)
    if int(position.max()) >= dist.shape[2]:
        raise InvalidInputError(
            f"{what} has {dist.shape[2]} positions but the log uses position {position.max()}"
        )
    return dist[np.arange(n), :, position]


def prepare(
    data: BanditData, action_dist: Array, estimated_rewards: Array | None = None
) -> Prepared:
    """Validate the policy (and reward model) against the log; compute weights and DM terms."""
    dist = np.asarray(action_dist, dtype=np.float64)
    n = data.n_rows
    if dist.shape[0] != n or dist.shape[1] < data.n_actions:
        raise InvalidInputError(
            f"action_dist has shape {dist.shape}; the log needs ({n}, {data.n_actions}"
            + (", positions)" if data.position is not None else ")")
        )
    if not np.all(np.isfinite(dist)) or dist.min() < 0.0:
        raise InvalidInputError("action_dist must hold finite probabilities >= 0")
    sums = dist.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        bad = np.argwhere(~np.isclose(sums, 1.0, atol=1e-6))[0]
        raise InvalidInputError(
            f"action_dist must sum to 1 over actions; row {tuple(int(i) for i in bad)} sums "
            f"to {float(sums[tuple(bad)]):.6g}"
        )
    rows = np.arange(n)
    pi = _slot(dist, data, "action_dist")
    weight = pi[rows, data.action] / data.pscore
    q_logged = dm = None
    if estimated_rewards is not None:
        q_all = np.asarray(estimated_rewards, dtype=np.float64)
        if q_all.shape[:2] != dist.shape[:2] or q_all.ndim != dist.ndim:
            raise InvalidInputError(
                f"estimated_rewards has shape {q_all.shape}, action_dist {dist.shape}"
            )
        q = _slot(q_all, data, "estimated_rewards")
        q_logged = q[rows, data.action]
        dm = np.einsum("ij,ij->i", pi, q)
    return Prepared(data.reward, weight, q_logged, dm, data.position)


class Estimator:
    """Base: subclasses give their per-row terms."""

    name: ClassVar[str]
    needs_reward_model: ClassVar[bool] = False
    uses_weights: ClassVar[bool] = True

    def terms(self, p: Prepared) -> Terms:
        raise NotImplementedError

    def label(self) -> str:
        return self.name

    def _check(self, p: Prepared) -> None:
        if self.needs_reward_model and (p.dm is None or p.q_logged is None):
            raise InvalidInputError(f"{self.name} needs estimated_rewards (a reward model)")

    def sums(self, p: Prepared) -> TermSums:
        self._check(p)
        return TermSums.of(self.terms(p), p.n, p.weight if self.uses_weights else None)

    def estimate(
        self, data: BanditData, action_dist: Array, estimated_rewards: Array | None = None
    ) -> float:
        return self.sums(prepare(data, action_dist, estimated_rewards)).value()

    def interval(
        self,
        data: BanditData,
        action_dist: Array,
        estimated_rewards: Array | None = None,
        *,
        alpha: float = 0.05,
        n_bootstrap: int = 1000,
        seed: int = 0,
    ) -> Interval:
        """Percentile bootstrap with ``n_bootstrap`` resamples; 0 gives the normal
        (delta-method) interval, which is what the online evaluators use."""
        return self.interval_of(
            prepare(data, action_dist, estimated_rewards),
            alpha=alpha,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )

    def interval_of(
        self, p: Prepared, *, alpha: float = 0.05, n_bootstrap: int = 0, seed: int = 0
    ) -> Interval:
        self._check(p)
        if n_bootstrap <= 0:
            return self.sums(p).normal_interval(alpha)
        return bootstrap_interval(self.terms(p), p.n, alpha, n_bootstrap, seed)


def _clipped(w: Array, clip: float | None) -> Array:
    return w if clip is None else np.minimum(w, clip)


def model_values(p: Prepared) -> Array:
    assert p.dm is not None
    return p.dm


def residuals(p: Prepared) -> Array:
    assert p.q_logged is not None
    return p.reward - p.q_logged


@dataclass
class DM(Estimator):
    """Direct method: the reward model's value of the policy (no weights; biased if the
    model is wrong, low variance)."""

    name: ClassVar[str] = "dm"
    needs_reward_model: ClassVar[bool] = True
    uses_weights: ClassVar[bool] = False

    def terms(self, p: Prepared) -> Terms:
        return Terms(a=model_values(p))


@dataclass
class IPS(Estimator):
    """Inverse propensity scoring: ``mean(w r)``; unbiased, high variance. ``clip`` caps
    the weights (less variance, some bias)."""

    name: ClassVar[str] = "ips"
    clip: float | None = None

    def label(self) -> str:
        return self.name if self.clip is None else f"clipped-ips(M={self.clip:g})"

    def terms(self, p: Prepared) -> Terms:
        return Terms(*self.row(_clipped(p.weight, self.clip), p.reward))

    @staticmethod
    def row(weight: Any, reward: Any) -> tuple[Any, Any, Any]:
        """(a, u, v) of rows: arrays here, single floats for the online evaluators."""
        return weight * reward, 0.0, 1.0


@dataclass
class SNIPS(Estimator):
    """Self-normalised IPS: ``sum(w r) / sum(w)``; slightly biased, far steadier."""

    name: ClassVar[str] = "snips"
    clip: float | None = None

    def label(self) -> str:
        return self.name if self.clip is None else f"clipped-snips(M={self.clip:g})"

    def terms(self, p: Prepared) -> Terms:
        return Terms(*self.row(_clipped(p.weight, self.clip), p.reward))

    @staticmethod
    def row(weight: Any, reward: Any) -> tuple[Any, Any, Any]:
        """(a, u, v) of rows: arrays here, single floats for the online evaluators."""
        return 0.0, weight * reward, weight


@dataclass
class IIPS(Estimator):
    """Independent-position IPS for slates: the slate's total reward, summing per-position
    IPS means (assumes a slot's reward depends only on the item in that slot)."""

    name: ClassVar[str] = "iips"
    clip: float | None = None

    def terms(self, p: Prepared) -> Terms:
        w = _clipped(p.weight, self.clip)
        if p.position is None:
            return Terms(a=w * p.reward)
        counts = np.bincount(p.position).astype(np.float64)
        share = p.n / counts[p.position]
        return Terms(a=w * p.reward * share)


@dataclass
class DR(Estimator):
    """Doubly robust: the DM value corrected by importance-weighted residuals; unbiased
    when either the weights or the reward model are right."""

    name: ClassVar[str] = "dr"
    needs_reward_model: ClassVar[bool] = True
    clip: float | None = None

    def label(self) -> str:
        return self.name if self.clip is None else f"clipped-dr(M={self.clip:g})"

    def terms(self, p: Prepared) -> Terms:
        return Terms(a=model_values(p) + _clipped(p.weight, self.clip) * residuals(p))


@dataclass
class SNDR(Estimator):
    """Self-normalised DR: the correction term is divided by ``mean(w)`` instead of 1."""

    name: ClassVar[str] = "sndr"
    needs_reward_model: ClassVar[bool] = True

    def terms(self, p: Prepared) -> Terms:
        return Terms(a=model_values(p), u=p.weight * residuals(p), v=p.weight)
