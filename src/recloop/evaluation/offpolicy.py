"""Off-policy estimators: how would an evaluation policy have done on this log?

Every estimator is a small class with ``estimate(data, action_dist, estimated_rewards)``
and ``interval(..., alpha, n_bootstrap, seed)``. They differ only in their per-row terms
(see :mod:`recloop.evaluation.terms`), which are vectorised NumPy over all rows.

``action_dist`` is the evaluation policy's probability of each action for each row, shape
``(n, A)``, or ``(n, A, L)`` with positions (the probability of putting action ``a`` at slot
``l``: position is part of the context). ``estimated_rewards`` (a reward model's ``q(x, a)``,
same shape) is needed by DM and the doubly robust family; see
:mod:`recloop.evaluation.reward_model` for cross-fitted ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


def _dm(p: Prepared) -> Array:
    assert p.dm is not None
    return p.dm


def _residual(p: Prepared) -> Array:
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
        return Terms(a=_dm(p))


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
        return Terms(a=_dm(p) + _clipped(p.weight, self.clip) * _residual(p))


@dataclass
class SNDR(Estimator):
    """Self-normalised DR: the correction term is divided by ``mean(w)`` instead of 1."""

    name: ClassVar[str] = "sndr"
    needs_reward_model: ClassVar[bool] = True

    def terms(self, p: Prepared) -> Terms:
        return Terms(a=_dm(p), u=p.weight * _residual(p), v=p.weight)


def _tuned(
    p: Prepared,
    candidates: Sequence[float],
    shrink: Callable[[Array, float], Array],
) -> float:
    """Pick the hyperparameter minimising estimated MSE = variance/n + bias^2, where the
    bias is estimated against plain DR's correction: ``mean((w - w_h) (r - q))``."""
    w, res, dm = p.weight, _residual(p), _dm(p)
    best, best_mse = candidates[-1], math.inf
    for h in candidates:
        wh = shrink(w, h)
        a = dm + wh * res
        var = float(a.var(ddof=1)) / p.n if p.n > 1 else math.inf
        bias = float(np.mean((w - wh) * res))
        mse = var + bias * bias
        if mse < best_mse:
            best, best_mse = h, mse
    return best


def _switch(w: Array, tau: float) -> Array:
    return np.where(w <= tau, w, 0.0)


def _shrink(w: Array, lam: float) -> Array:
    if math.isinf(lam):
        return w
    return lam * w / (w * w + lam)


@dataclass
class _TunedDR(Estimator):
    """DR with the importance weights reshaped by one hyperparameter, given or, when None,
    tuned on the log by estimated MSE (the value chosen shows in the label)."""

    needs_reward_model: ClassVar[bool] = True
    param: ClassVar[str]
    chosen: float | None = field(default=None, kw_only=True)

    def given(self) -> float | None:
        raise NotImplementedError

    def grid(self, p: Prepared) -> list[float]:
        raise NotImplementedError

    @staticmethod
    def reshape(w: Array, h: float) -> Array:
        raise NotImplementedError

    def label(self) -> str:
        h = self.given() if self.given() is not None else self.chosen
        return self.name if h is None else f"{self.name}({self.param}={h:.3g})"

    def terms(self, p: Prepared) -> Terms:
        h = self.given()
        if h is None:
            h = self.chosen = _tuned(p, self.grid(p), self.reshape)
        return Terms(a=_dm(p) + self.reshape(p.weight, h) * _residual(p))


@dataclass
class SwitchDR(_TunedDR):
    """Switch-DR (Wang et al. 2017): DR where the weight is at most ``tau``, DM alone where
    it is larger. ``tau=None`` tunes it on the log (estimated MSE)."""

    name: ClassVar[str] = "switch-dr"
    param: ClassVar[str] = "tau"
    tau: float | None = None

    def given(self) -> float | None:
        return self.tau

    def grid(self, p: Prepared) -> list[float]:
        return [*np.quantile(p.weight, [0.5, 0.75, 0.9, 0.95, 0.99]).tolist(), math.inf]

    @staticmethod
    def reshape(w: Array, h: float) -> Array:
        return _switch(w, h)


@dataclass
class DROS(_TunedDR):
    """DR with optimistic shrinkage (Su et al. 2020): weights become
    ``lam w / (w^2 + lam)``. ``lam=None`` tunes it on the log (estimated MSE)."""

    name: ClassVar[str] = "dr-os"
    param: ClassVar[str] = "lambda"
    lam: float | None = None

    def given(self) -> float | None:
        return self.lam

    def grid(self, p: Prepared) -> list[float]:
        w2 = p.weight * p.weight
        base = np.quantile(w2, [0.5, 0.9, 0.99, 1.0])
        return [*sorted({float(b * s) for b in base for s in (1.0, 10.0) if b > 0}), math.inf]

    @staticmethod
    def reshape(w: Array, h: float) -> Array:
        return _shrink(w, h)


ESTIMATOR_NAMES = (
    "dm",
    "ips",
    "snips",
    "dr",
    "sndr",
    "switch-dr",
    "dr-os",
    "clipped-ips",
    "clipped-dr",
    "iips",
)


def make_estimator(
    name: str,
    *,
    clip: float | None = None,
    tau: float | None = None,
    lam: float | None = None,
) -> Estimator:
    """By name, as the CLI takes them. Clipped variants need ``clip``."""
    simple: dict[str, Callable[[], Estimator]] = {
        "dm": DM,
        "ips": IPS,
        "snips": SNIPS,
        "dr": DR,
        "sndr": SNDR,
        "iips": IIPS,
        "switch-dr": lambda: SwitchDR(tau=tau),
        "dr-os": lambda: DROS(lam=lam),
    }
    if name in simple:
        return simple[name]()
    if name in ("clipped-ips", "clipped-dr"):
        if clip is None or not clip > 0:
            raise InvalidInputError(f"{name} needs a clip level > 0")
        return IPS(clip=clip) if name == "clipped-ips" else DR(clip=clip)
    raise InvalidInputError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATOR_NAMES)}")


@dataclass(frozen=True, slots=True)
class EstimateRow:
    name: str
    interval: Interval
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"estimator": self.name, "n": self.n, **self.interval.to_dict()}


@dataclass(frozen=True, slots=True)
class Overlap:
    """How well the log covers the evaluation policy."""

    n: int
    effective_sample_size: float
    max_weight: float
    mean_weight: float

    @property
    def ess_ratio(self) -> float:
        return self.effective_sample_size / self.n if self.n else 0.0

    def warnings(self, min_ess_ratio: float = 0.1, max_weight_share: float = 0.01) -> list[str]:
        """Plain-language warnings when estimates rest on few rows."""
        out = []
        if self.ess_ratio < min_ess_ratio:
            out.append(
                f"poor overlap: effective sample size {self.effective_sample_size:.0f} is "
                f"{self.ess_ratio:.1%} of {self.n} rows"
            )
        if self.max_weight > max_weight_share * self.n * max(self.mean_weight, 1e-12):
            out.append(
                f"one row can dominate: max importance weight {self.max_weight:.3g} "
                f"(mean {self.mean_weight:.3g})"
            )
        if abs(self.mean_weight - 1.0) > 0.1:
            out.append(
                f"mean importance weight is {self.mean_weight:.3f}, not ~1: the logged "
                "propensities or the policy's support may be off"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "effective_sample_size": self.effective_sample_size,
            "ess_ratio": self.ess_ratio,
            "max_weight": self.max_weight,
            "mean_weight": self.mean_weight,
        }


def overlap(p: Prepared) -> Overlap:
    w = p.weight
    sums = TermSums.of(Terms(a=w), p.n, w)
    return Overlap(p.n, sums.effective_sample_size(), sums.max_w, sums.sum_w / p.n)


def evaluate(
    data: BanditData,
    action_dist: Array,
    estimators: Sequence[Estimator],
    estimated_rewards: Array | None = None,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> tuple[list[EstimateRow], Overlap]:
    """Several estimators on one (log, policy, reward model): weights computed once."""
    p = prepare(data, action_dist, estimated_rewards)
    rows = []
    for est in estimators:
        iv = est.interval_of(p, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed)
        rows.append(EstimateRow(est.label(), iv, p.n))
    return rows, overlap(p)
