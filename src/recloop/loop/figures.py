"""What a loop reports about itself beyond its metrics: apprentice mode's figures and the
evaluations of its policies."""

from __future__ import annotations

from typing import Any

from recloop.core.stats import LoopStats
from recloop.evaluation.terms import TermSums


def _estimate(n: float, total: float, squares: float, alpha: float) -> dict[str, Any]:
    if n < 2:
        return {"value": None, "low": None, "high": None, "n": int(n)}
    # the rewards' mean and its normal interval, as every estimate here is made
    sums = TermSums(n=int(n), sa=total, saa=squares, sv=n, svv=n)
    interval = sums.normal_interval(alpha)
    return {"value": interval.value, "low": interval.low, "high": interval.high, "n": int(n)}


def apprentice_report(stats: LoopStats, alpha: float = 0.05) -> dict[str, Any]:
    """Apprentice mode's figures, from the pipeline's counters: of the decisions made on
    the baseline, how many the learned policy (scored before it learned from each) would
    have chosen the same, and the rewards of both. The learned policy's estimate is its
    mean reward where it agreed with the baseline: an unbiased estimate of its value when
    the baseline's choice does not depend on the context beyond what the learner sees
    (e.g. an editor's rotating pick)."""
    c = stats.get
    events, imitated = c("apprentice_events_total"), c("apprentice_imitated_total")
    rewards, imitated_rewards = (
        c("apprentice_rewards_total"),
        c("apprentice_imitated_rewards_total"),
    )
    return {
        "numberOfEvents": int(events),
        "numberOfImitatedEvents": int(imitated),
        "sumOfRewards": rewards,
        "sumOfImitatedRewards": imitated_rewards,
        "baseline": _estimate(events, rewards, c("apprentice_rewards_sq_total"), alpha),
        "learned": _estimate(
            imitated, imitated_rewards, c("apprentice_imitated_rewards_sq_total"), alpha
        ),
    }
