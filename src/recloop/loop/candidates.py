"""Candidate policies of a loop: registered by spec (stored, so every process and every
restart sees them) or added as in-process objects, and kept in step with the evaluator."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson

from recloop.core.errors import InvalidInputError, RecloopError, UnknownPolicyError
from recloop.core.protocols import Explorer, JoinedStore, Policy
from recloop.evaluation.online import Candidate, OnlineEvaluator
from recloop.exploration.explorers import make_explorer
from recloop.kinds.policies import make_policy

log = logging.getLogger(__name__)
CANDIDATE_PREFIX = "candidate:"
MAX_CANDIDATES = 32
"""Candidate policies one loop evaluates. Each is a live policy in the pipeline process
(a VW learner holds about 12 MB) scoring every joined example from then on: registering
names in a loop grew the pipeline's memory and each join's work without bound."""


class CandidateRegistry:
    """``runs_evaluators`` is False in a serving-only process: it validates and stores
    specs, and the pipeline process evaluates them."""

    def __init__(
        self,
        store: JoinedStore,
        evaluator: OnlineEvaluator,
        epsilon: float,
        runs_evaluators: bool,
        lock: threading.Lock,
    ) -> None:
        self.store = store
        self.evaluator = evaluator
        self.epsilon = epsilon
        self.runs_evaluators = runs_evaluators
        self.lock = lock  # the pipeline's: candidates change between steps, not during one
        self._in_process: set[str] = set()

    def _build(self, name: str, spec: Mapping[str, Any]) -> Candidate:
        policy = make_policy(spec["kind"], spec.get("params"))
        explorer = make_explorer(spec.get("explorer", "greedy"), self.epsilon)
        return Candidate(name, policy, explorer, spec)

    def register(
        self,
        name: str,
        kind: str,
        params: Mapping[str, Any] | None,
        explorer: str,
        persist: bool,
    ) -> None:
        if not name or len(name) > 100:
            raise InvalidInputError("candidate name must be 1-100 characters")
        spec: dict[str, Any] = {"kind": kind, "params": dict(params or {}), "explorer": explorer}
        try:  # before anything is built: the spec is stored as JSON, params are any JSON
            encoded = orjson.dumps(spec).decode()
        except orjson.JSONEncodeError as exc:  # an integer beyond 64 bits was a 500
            raise InvalidInputError(f"params cannot be stored as JSON: {exc}") from None
        cand = self._build(name, spec)  # validates the spec even where it is not run
        self._check_room(name, persist)
        if self.runs_evaluators:
            with self.lock:
                self.evaluator.add(cand)
        if persist:
            self.store.set_state(CANDIDATE_PREFIX + name, encoded)

    def _check_room(self, name: str, persist: bool) -> None:
        """A new name only while the loop has fewer than ``MAX_CANDIDATES`` (replacing one
        is always allowed)."""
        names = set(self.evaluator.names()) if self.runs_evaluators else set()
        if persist:
            names |= {key[len(CANDIDATE_PREFIX) :] for key in self.store.states(CANDIDATE_PREFIX)}
        if name not in names and len(names) >= MAX_CANDIDATES:
            raise InvalidInputError(
                f"a loop evaluates at most {MAX_CANDIDATES} candidate policies; "
                "delete one (DELETE /v1/policies/{name}) before adding another"
            )

    def add_object(self, name: str, policy: Policy, explorer: Explorer | None) -> None:
        if not self.runs_evaluators:
            raise InvalidInputError(
                "a serving-only loop cannot evaluate in-process policies; register a policy "
                "kind instead, or use a loop with role='all'"
            )
        spec = {"kind": "in-process", "policy": policy.name}
        cand = Candidate(name, policy, explorer or make_explorer("greedy"), spec)
        self._check_room(name, persist=False)
        with self.lock:
            self.evaluator.add(cand)
            self._in_process.add(name)

    def unregister(self, name: str) -> None:
        known = self.store.get_state(CANDIDATE_PREFIX + name) is not None
        if self.runs_evaluators:
            known = self.evaluator.remove(name) or known
            self._in_process.discard(name)
        if not known:
            raise UnknownPolicyError(f"no candidate policy named {name!r}")
        self.store.delete_state(CANDIDATE_PREFIX + name)

    def sync(self) -> None:
        """Match the evaluator to the stored specs (registered by any process)."""
        stored = {
            key[len(CANDIDATE_PREFIX) :]: raw
            for key, raw in self.store.states(CANDIDATE_PREFIX).items()
        }
        running = set(self.evaluator.names()) - self._in_process
        for name in running - set(stored):
            self.evaluator.remove(name)
        for name in set(stored) - running:
            try:
                cand = self._build(name, orjson.loads(stored[name]))
            except RecloopError as exc:
                log.warning("skipping stored candidate %s: %s", name, exc)
                continue
            self.evaluator.add(cand)
