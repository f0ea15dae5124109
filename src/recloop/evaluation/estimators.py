"""Estimators by name (as the CLI and the benchmarks take them), and several estimators run
on one log and policy with the weights computed once, with the log's overlap diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from recloop.core.errors import InvalidInputError
from recloop.evaluation.logdata import BanditData
from recloop.evaluation.offpolicy import (
    DM,
    DR,
    IIPS,
    IPS,
    SNDR,
    SNIPS,
    Array,
    Estimator,
    Prepared,
    prepare,
)
from recloop.evaluation.terms import Interval, Terms, TermSums
from recloop.evaluation.tuned_dr import DROS, SwitchDR

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
