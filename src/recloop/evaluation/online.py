"""Multiworld testing: every candidate policy evaluated off-policy on the joined stream."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recloop.core.protocols import Explorer, Policy
from recloop.core.types import JoinedExample, available_actions
from recloop.evaluation.estimators import Estimate, MeanStats, WeightedRewardStats
from recloop.exploration.explorers import Greedy


@dataclass(slots=True)
class Candidate:
    """A policy we only evaluate; by default it acts greedily on its scores."""

    name: str
    policy: Policy
    explorer: Explorer = field(default_factory=Greedy)
    spec: Mapping[str, Any] = field(default_factory=dict)
    stats: WeightedRewardStats = field(default_factory=WeightedRewardStats)

    def probability_of_logged(self, example: JoinedExample) -> float:
        d = example.decision
        acts = available_actions(d.actions, d.excluded)
        probs = self.explorer.distribution(np.asarray(self.policy.scores(d.context, acts)))
        index = next(i for i, a in enumerate(acts) if a.id == d.chosen)
        return float(probs[index])

    def update(self, example: JoinedExample) -> None:
        """Score the logged example, then let a learning candidate learn from it."""
        p = self.probability_of_logged(example)
        self.stats.add(p / example.decision.probability, example.reward)
        learn = getattr(self.policy, "learn_one", None)
        if learn is not None:
            learn(example)


def _estimate_dict(e: Estimate) -> dict[str, float | None]:
    def clean(x: float) -> float | None:
        return None if not np.isfinite(x) else x

    return {"value": clean(e.value), "low": clean(e.low), "high": clean(e.high)}


class OnlineEvaluator:
    """Consumes joined examples; keeps IPS/SNIPS per candidate and the observed average.

    Candidates that can learn (``learn_one``) are scored *before* they learn each example
    (progressive validation), so their estimates are honest.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._candidates: dict[str, Candidate] = {}
        self.observed = MeanStats()
        self.offset = 0

    def add(self, candidate: Candidate, history: Iterable[JoinedExample] = ()) -> None:
        """Register a candidate, first replaying the joined history it missed."""
        with self._lock:
            for example in history:
                if example.seq > self.offset:
                    break
                candidate.update(example)
            self._candidates[candidate.name] = candidate

    def remove(self, name: str) -> bool:
        with self._lock:
            return self._candidates.pop(name, None) is not None

    def names(self) -> list[str]:
        with self._lock:
            return list(self._candidates)

    def update(self, example: JoinedExample) -> None:
        with self._lock:
            self.observed.add(example.reward)
            for cand in self._candidates.values():
                cand.update(example)
            self.offset = max(self.offset, example.seq)

    def report(self) -> dict[str, Any]:
        with self._lock:
            candidates = []
            for cand in self._candidates.values():
                s = cand.stats
                candidates.append(
                    {
                        "name": cand.name,
                        "spec": dict(cand.spec),
                        "n": s.n,
                        "ips": _estimate_dict(s.ips()),
                        "snips": _estimate_dict(s.snips()),
                        "effective_sample_size": s.effective_sample_size(),
                        "max_weight": s.max_w,
                    }
                )
            return {
                "examples": self.observed.n,
                "offset": self.offset,
                "deployed": {"observed": _estimate_dict(self.observed.estimate())},
                "candidates": candidates,
            }
