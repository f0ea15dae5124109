"""`recloop estimate-offline`: a log file, an evaluation policy, estimators -> a report.

The evaluation policy comes as a matrix of action probabilities (``.npy``), or as a recloop
Policy (a registered kind such as ``uniform`` or ``first-action``, or a saved VW model file)
that scores every row's actions again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recloop.core.errors import InvalidInputError
from recloop.core.protocols import Explorer, Policy
from recloop.core.types import Action
from recloop.evaluation.estimators import EstimateRow, Overlap, evaluate
from recloop.evaluation.logdata import BanditData, JoinedLog
from recloop.evaluation.offpolicy import Estimator
from recloop.evaluation.reward_model import cross_fit_joined_rewards, cross_fit_rewards
from recloop.exploration.explorers import Greedy

Array = NDArray[np.float64]


def load_policy_probs(path: str | Path) -> Array:
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"no such file: {path}")
    try:
        probs = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InvalidInputError(f"{path}: not a NumPy .npy array ({exc})") from exc
    if probs.ndim not in (2, 3):
        raise InvalidInputError(
            f"{path}: expected rows x actions (or rows x actions x positions), got shape "
            f"{probs.shape}"
        )
    return np.asarray(probs, dtype=np.float64)


def _actions(data: BanditData) -> list[Action]:
    if data.action_features is None:
        return [Action(str(a)) for a in range(data.n_actions)]
    return [
        Action(str(a), {f"f{j}": float(v) for j, v in enumerate(row)})
        for a, row in enumerate(data.action_features)
    ]


def policy_action_dist(policy: Policy, data: BanditData, explorer: Explorer | None = None) -> Array:
    """Score every row's actions with ``policy``: without positions, the explorer's
    distribution (greedy by default); with positions, the policy's ranking fills slot l
    with its l-th best action."""
    explorer = explorer or Greedy()
    actions = _actions(data)
    names = data.context_names or tuple(
        f"x_{j}" for j in range(0 if data.context is None else data.context.shape[1])
    )
    slots = data.len_list if data.position is not None else 1
    out = np.zeros((data.n_rows, data.n_actions, slots))
    for i in range(data.n_rows):
        values = [] if data.context is None else data.context[i].tolist()
        ctx = dict(zip(names, values, strict=True))
        scores = np.asarray(policy.scores(ctx, actions), dtype=np.float64)
        if data.position is None:
            out[i, :, 0] = explorer.distribution(scores)
        else:
            order = np.argsort(-scores, kind="stable")
            for slot in range(min(slots, len(order))):
                out[i, order[slot], slot] = 1.0
    return out if data.position is not None else out[:, :, 0]


def joined_action_dist(policy: Policy, log: JoinedLog, explorer: Explorer | None = None) -> Array:
    """The same for recloop's own joined log: each decision's own actions (and context) are
    scored again; action sets vary, so shorter ones are padded with probability 0."""
    explorer = explorer or Greedy()
    out = np.zeros((log.data.n_rows, log.data.n_actions))
    for i, (ctx, acts) in enumerate(zip(log.contexts, log.actions, strict=True)):
        scores = np.asarray(policy.scores(ctx, acts), dtype=np.float64)
        out[i, : len(acts)] = explorer.distribution(scores)
    return out


@dataclass
class OfflineReport:
    rows: list[EstimateRow]
    overlap: Overlap
    logged_average: float
    reward_model: str | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimates": [r.to_dict() for r in self.rows],
            "overlap": self.overlap.to_dict(),
            "logged_average_reward": self.logged_average,
            "reward_model": self.reward_model,
            "warnings": self.warnings,
        }


def run_offline(
    data: BanditData,
    action_dist: Array,
    estimators: Sequence[Estimator],
    *,
    reward_model: str = "hgb",
    n_folds: int = 3,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    seed: int = 0,
    joined: JoinedLog | None = None,
) -> OfflineReport:
    """Fit the reward model only if an estimator needs one (on ``joined``'s named features
    when the log is a loop's own), then estimate with every estimator."""
    q = None
    if any(e.needs_reward_model for e in estimators):
        if joined is not None:
            q = cross_fit_joined_rewards(joined, model=reward_model, n_folds=n_folds, seed=seed)
        else:
            q = cross_fit_rewards(data, model=reward_model, n_folds=n_folds, seed=seed)
    rows, ov = evaluate(
        data, action_dist, estimators, q, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed
    )
    return OfflineReport(
        rows=rows,
        overlap=ov,
        logged_average=float(data.reward.mean()),
        reward_model=f"{reward_model} ({n_folds}-fold cross-fitted)" if q is not None else None,
        warnings=ov.warnings(),
    )


def write_plot(report: OfflineReport, path: str | Path, title: str = "") -> None:
    """Estimates with their intervals, and the logged policy's average for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in report.rows]
    values = np.array([r.interval.value for r in report.rows])
    low = np.array([r.interval.low for r in report.rows])
    high = np.array([r.interval.high for r in report.rows])
    err = np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)])
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 4.0))
    ax.errorbar(range(len(names)), values, yerr=err, fmt="o", capsize=4)
    ax.axhline(report.logged_average, linestyle="--", color="grey", label="logged policy")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("estimated average reward")
    ax.set_title(title or "off-policy estimates (95% intervals)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
