"""Multiworld testing: every candidate policy evaluated off-policy on the joined stream."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recloop.core.protocols import Explorer, Policy
from recloop.core.types import JoinedExample, available_actions
from recloop.evaluation.offpolicy import IPS, SNIPS
from recloop.evaluation.terms import Interval, TermSums
from recloop.exploration.explorers import Greedy


@dataclass(slots=True)
class Candidate:
    """A policy we only evaluate; by default it acts greedily on its scores."""

    name: str
    policy: Policy
    explorer: Explorer = field(default_factory=Greedy)
    spec: Mapping[str, Any] = field(default_factory=dict)
    ips: TermSums = field(default_factory=TermSums)
    snips: TermSums = field(default_factory=TermSums)
    offset: int = 0
    """Seq of the last joined example this candidate has seen."""

    def probability_of_logged(self, example: JoinedExample) -> float:
        d = example.decision
        acts = available_actions(d.actions, d.excluded)
        probs = self.explorer.distribution(np.asarray(self.policy.scores(d.context, acts)))
        index = next(i for i, a in enumerate(acts) if a.id == d.chosen)
        return float(probs[index])

    def update(self, example: JoinedExample) -> None:
        """Score the logged example, then let a learning candidate learn from it."""
        if example.seq and example.seq <= self.offset:
            return  # seen already
        w = self.probability_of_logged(example) / example.decision.probability
        # the same per-row terms as the offline estimators (one implementation)
        for sums, terms in (
            (self.ips, IPS.row(w, example.reward)),
            (self.snips, SNIPS.row(w, example.reward)),
        ):
            sums.add(*terms, w=w)
        learn = getattr(self.policy, "learn_one", None)
        if learn is not None:
            learn(example)
        self.offset = max(self.offset, example.seq)


def _estimate_dict(e: Interval) -> dict[str, float | None]:
    return {k: v for k, v in e.to_dict().items() if k != "method"}


class OnlineEvaluator:
    """Consumes joined examples; keeps IPS/SNIPS per candidate and the observed average.

    Candidates that can learn (``learn_one``) are scored *before* they learn each example
    (progressive validation), so their estimates are honest.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._candidates: dict[str, Candidate] = {}
        self.observed = TermSums()
        self.offset = 0

    def add(self, candidate: Candidate) -> None:
        """Register a candidate. It first catches up on the joined history it missed, a
        bounded slice per :meth:`catch_up`, so registering never stalls the pipeline."""
        with self._lock:
            self._candidates[candidate.name] = candidate

    def catch_up(self, read: Callable[[int, int], list[JoinedExample]], limit: int) -> int:
        """Feed lagging candidates up to `limit` past examples (read by seq); returns how
        many were fed."""
        fed = 0
        with self._lock:
            for cand in self._candidates.values():
                while cand.offset < self.offset and fed < limit:
                    rows = read(cand.offset, min(1000, limit - fed))
                    if not rows:
                        break
                    for row in rows:
                        if row.seq > self.offset:
                            break
                        cand.update(row)
                        fed += 1
                    if rows[-1].seq > self.offset:
                        break
        return fed

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
                if cand.offset >= self.offset:  # caught up: take it live; else catch_up will
                    cand.update(example)
            self.offset = max(self.offset, example.seq)

    def report(self) -> dict[str, Any]:
        with self._lock:
            candidates = []
            for cand in self._candidates.values():
                candidates.append(
                    {
                        "name": cand.name,
                        "spec": dict(cand.spec),
                        "n": cand.ips.n,
                        "offset": cand.offset,
                        "caught_up": cand.offset >= self.offset,
                        "ips": _estimate_dict(cand.ips.normal_interval()),
                        "snips": _estimate_dict(cand.snips.normal_interval()),
                        "effective_sample_size": cand.ips.effective_sample_size(),
                        "max_weight": cand.ips.max_w,
                    }
                )
            return {
                "examples": self.observed.n,
                "offset": self.offset,
                "deployed": {"observed": _estimate_dict(self.observed.normal_interval())},
                "candidates": candidates,
            }
