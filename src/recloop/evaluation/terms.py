"""The one shape every off-policy estimator here takes: ``value = mean(a) + mean(u) / mean(v)``.

Each estimator only says what its per-row terms ``a``, ``u``, ``v`` are (IPS: ``a = w r``;
SNIPS: ``u = w r, v = w``; DR: ``a = dm + w (r - q)``; SNDR: ``a = dm, u = w (r - q),
v = w``...). Point estimates and normal (delta-method) intervals then come from the same
running sums, whether the rows arrive as a 1M-row array (offline) or one at a time from the
joined stream (online evaluators): there is no second implementation to drift.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Terms:
    """Per-row terms (arrays of one length; a scalar 0 or 1 stands for a constant)."""

    a: Array | float
    u: Array | float = 0.0
    v: Array | float = 1.0


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    low: float
    high: float
    method: str = "normal"

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "value": clean(self.value),
            "low": clean(self.low),
            "high": clean(self.high),
            "method": self.method,
        }


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan)


def z_value(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


@dataclass(slots=True)
class TermSums:
    """Running first and second moments of (a, u, v), plus the importance weights' sums
    for the effective sample size. Mergeable, a handful of floats however long the log."""

    n: int = 0
    sa: float = 0.0
    su: float = 0.0
    sv: float = 0.0
    saa: float = 0.0
    suu: float = 0.0
    svv: float = 0.0
    sau: float = 0.0
    sav: float = 0.0
    suv: float = 0.0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    max_w: float = 0.0

    def add(self, a: float, u: float = 0.0, v: float = 1.0, w: float | None = None) -> None:
        """One row (the online path)."""
        self.n += 1
        self.sa += a
        self.su += u
        self.sv += v
        self.saa += a * a
        self.suu += u * u
        self.svv += v * v
        self.sau += a * u
        self.sav += a * v
        self.suv += u * v
        if w is not None:
            self.sum_w += w
            self.sum_w2 += w * w
            self.max_w = max(self.max_w, w)

    @classmethod
    def of(cls, terms: Terms, n: int, weights: Array | None = None) -> TermSums:
        """All rows at once (the offline path): vectorised sums."""
        a, u, v = (np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)) for x in terms_abc(terms))
        s = cls(
            n=n,
            sa=float(a.sum()),
            su=float(u.sum()),
            sv=float(v.sum()),
            saa=float(a @ a),
            suu=float(u @ u),
            svv=float(v @ v),
            sau=float(a @ u),
            sav=float(a @ v),
            suv=float(u @ v),
        )
        if weights is not None and n:
            s.sum_w = float(weights.sum())
            s.sum_w2 = float(weights @ weights)
            s.max_w = float(weights.max())
        return s

    def merge(self, other: TermSums) -> None:
        for name in ("sa", "su", "sv", "saa", "suu", "svv", "sau", "sav", "suv"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.n += other.n
        self.sum_w += other.sum_w
        self.sum_w2 += other.sum_w2
        self.max_w = max(self.max_w, other.max_w)

    def value(self) -> float:
        if self.n == 0 or self.sv == 0.0:
            return math.nan
        return self.sa / self.n + self.su / self.sv

    def std_error(self) -> float:
        """Delta method: the influence of a row is ``a + (u - R v) / mean(v)``."""
        n = self.n
        if n < 2 or self.sv == 0.0:
            return math.inf
        ma, mu, mv = self.sa / n, self.su / n, self.sv / n
        ratio = mu / mv
        var_a = self.saa / n - ma * ma
        var_u = self.suu / n - mu * mu
        var_v = self.svv / n - mv * mv
        cov_au = self.sau / n - ma * mu
        cov_av = self.sav / n - ma * mv
        cov_uv = self.suv / n - mu * mv
        var_b = (var_u - 2.0 * ratio * cov_uv + ratio * ratio * var_v) / (mv * mv)
        cov_ab = (cov_au - ratio * cov_av) / mv
        var = max(var_a + var_b + 2.0 * cov_ab, 0.0) * n / (n - 1)
        return math.sqrt(var / n)

    def normal_interval(self, alpha: float = 0.05) -> Interval:
        value = self.value()
        if math.isnan(value):
            return NAN_INTERVAL
        half = z_value(alpha) * self.std_error()
        return Interval(value, value - half, value + half, "normal")

    def effective_sample_size(self) -> float:
        """Kish's ESS of the importance weights: how many on-policy rows the log is worth."""
        return (self.sum_w * self.sum_w) / self.sum_w2 if self.sum_w2 > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def terms_abc(terms: Terms) -> tuple[Array | float, Array | float, Array | float]:
    return terms.a, terms.u, terms.v


def bootstrap_interval(
    terms: Terms, n: int, alpha: float = 0.05, n_bootstrap: int = 1000, seed: int = 0
) -> Interval:
    """Percentile bootstrap over rows: resample the per-row terms with replacement."""
    if n == 0:
        return NAN_INTERVAL
    a, u, v = (np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)) for x in terms_abc(terms))
    value = TermSums.of(terms, n).value()
    rng = np.random.default_rng(seed)
    stats = np.empty(n_bootstrap)
    const_u = np.ndim(terms.u) == 0 and float(terms.u) == 0.0
    const_v = np.ndim(terms.v) == 0
    for b in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        est = a[idx].mean()
        if not const_u:
            den = float(v[0]) if const_v else v[idx].mean()
            est += u[idx].mean() / den
        stats[b] = est
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(value, float(low), float(high), f"bootstrap({n_bootstrap})")
