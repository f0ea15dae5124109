"""The doubly robust estimators whose importance weights are reshaped by one tuned
hyperparameter: Switch-DR (weights above tau dropped to the reward model) and DR-OS
(weights shrunk by lambda). Each picks its hyperparameter by estimated MSE unless given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from recloop.evaluation.offpolicy import Array, Estimator, Prepared, model_values, residuals
from recloop.evaluation.terms import Terms


def _tuned(
    p: Prepared,
    candidates: Sequence[float],
    shrink: Callable[[Array, float], Array],
) -> float:
    """Pick the hyperparameter minimising estimated MSE = variance/n + bias^2, where the
    bias is estimated against plain DR's correction: ``mean((w - w_h) (r - q))``."""
    w, res, dm = p.weight, residuals(p), model_values(p)
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
        return Terms(a=model_values(p) + self.reshape(p.weight, h) * residuals(p))


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
