"""The in-process client library: ``Loop`` ranks, logs, takes rewards and learns.

The web API is a thin layer over this class, so both have the same semantics.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from recloop.core.arrays import FloatArray
from recloop.core.checksum import verified_model
from recloop.core.clock import Clock, SystemClock
from recloop.core.errors import (
    DuplicateEventError,
    ExpiredEventError,
    InvalidInputError,
    ModelRejectedError,
    StoreUnavailableError,
    UnknownEventError,
    UnknownModelError,
)
from recloop.core.protocols import Explorer, ModelVersion, Policy
from recloop.core.stats import LoopStats
from recloop.core.types import Action, Activation, DeadLetter, Decision, ItemRecord, Reward
from recloop.core.validation import (
    check_actions,
    check_event_id,
    check_features,
    check_reward_value,
    to_action,
)
from recloop.evaluation.candidates import CandidateRegistry
from recloop.evaluation.online import OnlineEvaluator
from recloop.evaluation.terms import TermSums
from recloop.exploration.explorers import make_explorer
from recloop.exploration.sampling import sample_index, uniform_from_event
from recloop.features.catalogue import ItemCatalogue, PutResult
from recloop.features.vw_text import VWText
from recloop.learning.failures import FailureLog
from recloop.learning.lease import Lease, LeaseBusyError, LeaseLostError, acquire_lease
from recloop.learning.pipeline import APPRENTICE, REPLAY_KEY, Pipeline
from recloop.learning.sharing import SharedFigures
from recloop.policies.agent import load_model_policy
from recloop.policies.registry import make_policy
from recloop.policies.vw import VWPolicy
from recloop.settings import DEFAULT_LOOP, LoopSettings, settings_error
from recloop.stores.factory import open_item_store, open_stores

log = logging.getLogger(__name__)
OVERRIDES_KEY = "settings.overrides"
FALLBACK_VERSIONS = 20
"""How many older versions a server tries when the newest is bad and nothing serves yet."""
RUNTIME_SETTINGS = {
    "exp_unit_seconds",
    "default_reward",
    "reward_min",
    "reward_max",
    "reward_aggregation",
    "explorer",
    "epsilon",
    "softmax_lambda",
    "checkpoint_every_examples",
    "checkpoint_every_seconds",
    "learning_mode",
    "log_retention_days",
    "raw_log_retention_days",
    "vw_args",
    "interactions",
}
"""What :meth:`Loop.reconfigure` may change while the loop runs."""


ActionLike = Action | Mapping[str, Any] | str
Role = Literal["all", "serve", "pipeline"]


class Loop:
    """One decision loop, embedded: SQLite files under ``data_dir/<name>/``.

    >>> with Loop.open("data") as loop:                       # doctest: +SKIP
    ...     d = loop.rank({"user": "adult"}, ["politics", "sports"])
    ...     loop.reward(d.event_id, 1.0)
    """

    def __init__(
        self,
        settings: LoopSettings | None = None,
        data_dir: Path | str = Path("data"),
        name: str = DEFAULT_LOOP,
        clock: Clock | None = None,
        role: Role = "all",
    ) -> None:
        """``role``: "all" serves and runs the join/learn/evaluate pipeline (a library
        user's default); "serve" only ranks and logs, and reads what a "pipeline" process
        on the same data publishes (how ``recloop serve`` uses both cores)."""
        self.name = name
        self.role = role
        self.settings = settings or LoopSettings()
        self._configured = self.settings
        """The settings this process was opened with; overrides set at run time
        (:meth:`reconfigure`, stored with the loop) apply on top of them."""
        self._overrides_raw: str | None = None
        self.settings_problem: str | None = None
        """Why the stored run-time settings could not be applied (shown by /readyz)."""
        self._last_retention = -math.inf
        if self.settings.learner == "drn":  # bad parameters fail here, before files open
            from recloop.agents.drn_loop import DRNSpec

            DRNSpec.from_params(self.settings.drn, self.settings.seed)
        self.clock: Clock = clock or SystemClock()
        self.dir = Path(data_dir) / name
        self.stats = LoopStats()
        self.stores = open_stores(self.settings, self.dir)
        self.items: ItemCatalogue | None = None
        """The item catalogue (raw fields -> cached features); None in a pipeline process."""
        try:
            self._build(role)
        except BaseException:  # a standby retries every second, a bad setting is fixed and
            if self.items is not None:  # the loop opened again: leak no connection, no file
                self.items.store.close()
            self.stores.close()
            raise

    def _build(self, role: Role) -> None:
        """Everything the loop is made of beyond its stores (``__init__``, which closes
        the stores if this fails)."""
        self.log = self.stores.log
        self.joined = self.stores.joined
        self._load_overrides()  # before anything is built from the settings
        self.models = self.stores.models
        if role != "pipeline":
            self.items = ItemCatalogue(
                open_item_store(self.settings, self.dir), self.settings.features, self.stats
            )
        self.explorer = make_explorer(
            self.settings.explorer, self.settings.epsilon, self.settings.softmax_lambda
        )
        self.default_policy: Policy = make_policy(
            self.settings.default_policy,
            {"action_id": self.settings.default_action_id}
            if self.settings.default_action_id
            else {},
        )
        self._policy: Policy = self.default_policy
        self._policy_label = f"default:{self.default_policy.name}"
        self._rejected: set[str] = set()
        self._refresh_lock = threading.Lock()
        self._text = VWText()  # action-line cache shared by every model version served
        self.evaluator = OnlineEvaluator()
        self._pipeline_lock = threading.Lock()
        self.candidates = CandidateRegistry(
            self.joined,
            self.evaluator,
            self.settings.epsilon,
            role != "serve",
            self._pipeline_lock,
        )
        self.shared = SharedFigures(self.joined, self.stats)
        self.pipeline: Pipeline | None = None
        self._lease: Lease | None = None
        self._lease_checked = -math.inf
        if role != "serve":
            self._open_pipeline(self.settings.lease_wait_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if role != "pipeline":
            self.stats.set("model_version", 0.0)  # 0 = the default policy, no model yet
            self.refresh_model()

    @classmethod
    def open(
        cls,
        data_dir: Path | str = "data",
        name: str = DEFAULT_LOOP,
        start: bool = True,
        clock: Clock | None = None,
        **settings: Any,
    ) -> Loop:
        """Open (or create) a loop; with ``start`` the join/learn pipeline runs in a thread."""
        try:
            checked = LoopSettings(**settings)
        except ValidationError as exc:
            raise settings_error(exc, LoopSettings) from None
        loop = cls(checked, data_dir, name, clock)
        if start:
            loop.start()
        return loop

    # -- explore --------------------------------------------------------------------------
    @property
    def model_version(self) -> str:
        return self._policy.version

    def rank(
        self,
        context: Mapping[str, Any],
        actions: Sequence[ActionLike],
        event_id: str | None = None,
        excluded_actions: Iterable[str] = (),
        defer_activation: bool = False,
    ) -> Decision:
        """Score, explore, sample and log a decision; returns only once it is durable."""
        try:
            if self.items is not None:
                acts = self.items.actions(actions, self.clock.now())
            else:
                acts = tuple(to_action(a, i) for i, a in enumerate(actions))
            excluded = tuple(excluded_actions)
            check_features(context, "context")
            check_actions(acts, excluded)
            if event_id is None:
                event_id = uuid.uuid4().hex
            else:
                check_event_id(event_id)
        except InvalidInputError:
            self.stats.inc("rejected_total:invalid-input")
            raise
        drop = set(excluded)
        candidates = [a for a in acts if a.id not in drop] if drop else list(acts)
        policy = self._policy
        label = self._policy_label
        scores: FloatArray = np.asarray(policy.scores(context, candidates), dtype=np.float64)
        if not np.isfinite(scores).all():  # a diverged model must not break exploration
            big = float(np.finfo(np.float64).max)
            scores = np.nan_to_num(scores, nan=-big, posinf=big, neginf=-big)
        if self.settings.learning_mode != "online":
            # the application's baseline is shown: the first candidate, for certain
            probs = np.zeros(len(candidates))
            probs[0] = 1.0
            chosen, label = 0, APPRENTICE
        else:
            probs = self.explorer.distribution(scores)
            chosen = sample_index(probs, uniform_from_event(event_id, self.settings.seed))
        order: list[int] = np.argsort(-scores, kind="stable").tolist()
        order.remove(chosen)
        order.insert(0, chosen)  # the chosen (reward) action leads; the rest by score
        ranking = [candidates[i].id for i in order]
        ranking.extend(excluded)
        prob_list: list[float] = probs.tolist()
        probabilities = [prob_list[i] for i in order]
        probabilities.extend([0.0] * len(excluded))
        chosen_id = candidates[chosen].id
        chosen_index = (
            chosen if not drop else next(i for i, a in enumerate(acts) if a.id == chosen_id)
        )
        try:
            # stamp and append under the log's lock: a record stamped before a reader's clock
            # reading is always visible to that reader (the joiner never misses it)
            with self.log.exclusive(across_processes=False):
                decision = Decision(
                    event_id=event_id,
                    loop=self.name,
                    timestamp=self.clock.now(),
                    context=context,
                    actions=acts,
                    ranking=tuple(ranking),
                    probabilities=tuple(probabilities),
                    chosen=chosen_id,
                    chosen_index=chosen_index,
                    probability=prob_list[chosen],
                    model_version=policy.version,
                    policy=label,
                    deferred=defer_activation,
                    excluded=excluded,
                )
                self.log.append_decision(decision)
        except DuplicateEventError:
            self.stats.inc("rejected_total:duplicate-event")
            raise
        self.stats.inc("decisions_total")
        return decision

    # -- log ------------------------------------------------------------------------------
    def _check_window(self, event_id: str, kind: str) -> tuple[float, bool, float | None]:
        """Raise unless the event's window is open now; returns (now, deferred, activated).

        Call under ``log.exclusive()`` and stamp the record with the returned ``now``, so
        the check and the timestamp the joiner sees are the same instant.
        """
        info = self.log.decision_time(event_id)
        now = self.clock.now()
        if info is None:
            self.log.dead_letter(DeadLetter("unknown-event", event_id, now, {"kind": kind}))
            self.stats.inc("dead_letters_total:unknown-event")
            raise UnknownEventError(f"no decision with event id {event_id!r}")
        ts, deferred, activated = info
        start = activated if (deferred and activated is not None) else ts
        if now > start + self.settings.exp_unit_seconds:
            self.log.dead_letter(DeadLetter("expired-event", event_id, now, {"kind": kind}))
            self.stats.inc("dead_letters_total:expired-event")
            raise ExpiredEventError(
                f"the reward window of event {event_id!r} closed "
                f"{now - start - self.settings.exp_unit_seconds:.3f}s ago "
                f"(exp_unit={self.settings.exp_unit_seconds}s)"
            )
        return now, deferred, activated

    def reward(self, event_id: str, value: float, reward_id: str | None = None) -> None:
        """Log a reward for an event. Several may arrive; ``reward_id`` makes retries safe."""
        try:
            number = check_reward_value(value, self.settings.reward_min, self.settings.reward_max)
            check_event_id(event_id)
        except InvalidInputError:
            self.stats.inc("rejected_total:invalid-input")
            raise
        try:
            with self.log.exclusive():
                now, _, _ = self._check_window(event_id, "reward")
                self.log.append_reward(Reward(event_id, number, now, reward_id))
        except DuplicateEventError:
            self.stats.inc("rejected_total:duplicate-reward")
            raise DuplicateEventError(
                f"reward {reward_id!r} for event {event_id!r} was already received"
            ) from None
        self.stats.inc("rewards_total")

    def activate(self, event_id: str) -> None:
        """Mark a deferred decision as shown, so it is learned from. Idempotent."""
        check_event_id(event_id)
        with self.log.exclusive():
            now, deferred, activated = self._check_window(event_id, "activation")
            if not deferred or activated is not None:
                return
            try:
                self.log.append_activation(Activation(event_id, now))
            except DuplicateEventError:
                return
        self.stats.inc("activations_total")

    # -- learn / deploy -------------------------------------------------------------------
    def _open_pipeline(self, wait_seconds: float) -> None:
        """Take the loop's pipeline lease and build the pipeline from the committed offsets
        (LeaseBusyError while another process holds it)."""
        self._lease = acquire_lease(self.settings.storage_url, self.dir, wait_seconds)
        self._lease_checked = time.monotonic()
        self.candidates.sync()
        self.pipeline = Pipeline(
            self.settings,
            self.log,
            self.joined,
            self.models,
            self.evaluator,
            self.clock,
            self.stats,
        )

    def _check_lease(self) -> None:
        """The lease can be lost under a running pipeline: a PostgreSQL restart ends the
        session that held the advisory lock, and a standby may take it. Checked once a
        second; a lost lease stops this pipeline at once (LeaseLostError), so two never
        join and learn side by side. A library loop ("all") takes it again when free and
        resumes from the committed offsets; a pipeline process reopens the loop."""
        now = time.monotonic()
        if self.role == "all" and self._lease is None and now - self._lease_checked >= 1.0:
            self._lease_checked = now
            try:
                self._open_pipeline(0.0)
            except (LeaseBusyError, StoreUnavailableError):
                return
            log.warning("loop %s took its pipeline lease again", self.name)
            return
        if self._lease is None or now - self._lease_checked < 1.0:
            return
        self._lease_checked = now
        if self._lease.held():
            return
        self._lease.release()
        self._lease = None
        if self.pipeline is not None:
            self.pipeline.close()  # its memory may be behind what another pipeline committed
            self.pipeline = None
        self.stats.inc("pipeline_lease_lost_total")
        try:
            self._open_pipeline(0.0)  # nobody took it: carry on from the committed offsets
        except (LeaseBusyError, StoreUnavailableError):
            raise LeaseLostError(
                f"loop {self.name!r} lost its pipeline lease; its pipeline stopped"
            ) from None
        log.warning("loop %s lost its pipeline lease and took it again", self.name)

    def step(self) -> int:
        """Run the pipeline once (join, learn, evaluate) and pick up a new model."""
        self._sync_settings()
        if self.role != "serve":
            self._check_lease()
        joined = 0
        if self.pipeline is not None:
            with self._pipeline_lock:
                if self.role == "pipeline":
                    self.candidates.sync()
                joined = self.pipeline.step()
                self._retain()
                if self.role == "pipeline":
                    self.shared.publish_pipeline(self.evaluator.report())
        else:
            self.shared.exchange_serving()
        if self.role != "pipeline":
            self.refresh_model()
            if self.items is not None:
                self.items.refresh()
        return joined

    # -- item catalogue -------------------------------------------------------------------
    def _catalogue(self) -> ItemCatalogue:
        if self.items is None:
            raise InvalidInputError("the item catalogue is not open in a pipeline process")
        return self.items

    def put_item(self, item_id: str, fields: Mapping[str, Any]) -> PutResult:
        """Add or update a catalogue item from its raw fields; features are computed (once
        per content) by the loop's feature spec, and used when a rank call names the id."""
        return self.put_items([(item_id, fields)])[0]

    def put_items(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[PutResult]:
        """:meth:`put_item` for a batch, in one transaction (the first batch a catalogue
        sees also fits the text reduction and topics)."""
        try:
            return self._catalogue().put(items)
        except InvalidInputError:
            self.stats.inc("rejected_total:invalid-item")
            raise

    def get_item(self, item_id: str) -> ItemRecord | None:
        return self._catalogue().get(item_id)

    def delete_item(self, item_id: str) -> bool:
        return self._catalogue().delete(item_id)

    def list_items(self, after: str = "", limit: int = 100) -> list[ItemRecord]:
        """Catalogue items in id order, after ``after`` (paging)."""
        return self._catalogue().store.items(after, max(1, min(limit, 1000)))

    def refit_features(self, fit_sample: int = 20_000) -> int:
        """Fit the feature generator again on the whole catalogue and recompute every
        item's features (see :meth:`ItemCatalogue.refit`)."""
        return self._catalogue().refit(fit_sample)

    def explain_features(self) -> list[dict[str, str]]:
        """Each raw field's kind, whether the spec named it or it was inferred (and why),
        and what its encoder has fitted."""
        return self._catalogue().explain()

    # -- settings changed at run time ------------------------------------------------------
    def reconfigure(self, **changes: Any) -> LoopSettings:
        """Change settings of the running loop (exp_unit_seconds, default_reward,
        reward_aggregation, explorer, epsilon, softmax_lambda, checkpoint cadence,
        learning_mode, vw_args, interactions). Stored with the loop, so every process of it
        (servers, the pipeline) applies them within a tick, and they outlive restarts; a new
        window applies to decisions logged after. New VW arguments start a new learner,
        which learns the whole joined history again with them."""
        unknown = sorted(set(changes) - RUNTIME_SETTINGS)
        if unknown:
            raise InvalidInputError(
                f"cannot change {unknown} at run time; can: {sorted(RUNTIME_SETTINGS)}"
            )
        with self._refresh_lock:
            raw = self.joined.get_state(OVERRIDES_KEY)
            merged = {**(json.loads(raw) if raw else {}), **changes}
            settings = self._with_overrides(merged)
            encoded = json.dumps(merged, sort_keys=True)
            self.joined.set_state(OVERRIDES_KEY, encoded)
            self._apply(settings, encoded)
        self.stats.inc("reconfigurations_total")
        return settings

    @property
    def configured_settings(self) -> LoopSettings:
        """The settings the loop was opened with, before run-time overrides."""
        return self._configured

    def _with_overrides(self, overrides: Mapping[str, Any]) -> LoopSettings:
        try:
            return LoopSettings(**{**self._configured.model_dump(), **overrides})
        except ValidationError as exc:
            raise settings_error(exc, LoopSettings) from None

    def _stored_settings(self, raw: str | None) -> LoopSettings | None:
        """The configured settings with the stored overrides, or None if those are
        unusable (logged; the settings in force stay)."""
        try:
            return self._with_overrides(json.loads(raw) if raw else {})
        except (InvalidInputError, json.JSONDecodeError) as exc:
            # an operator's problem, named in one line (and in /readyz), not a traceback:
            # every process of the loop logs it as it reads the overrides
            log.error("stored settings overrides of loop %s are unusable: %s", self.name, exc)
            self.settings_problem = f"stored settings overrides are unusable: {exc}"
            self.stats.set("settings_overrides_unusable", 1.0)
            return None

    def _load_overrides(self) -> None:
        raw = self.joined.get_state(OVERRIDES_KEY)
        settings = self._stored_settings(raw) if raw is not None else None
        if settings is not None:
            self.settings = settings
        self._overrides_raw = raw

    def _sync_settings(self) -> None:
        """Apply overrides another process stored (cheap: one small read per tick)."""
        raw = self.joined.get_state(OVERRIDES_KEY)
        if raw == self._overrides_raw:
            return
        with self._refresh_lock:
            settings = self._stored_settings(raw)
            if settings is None:
                self._overrides_raw = raw
                return
            self._apply(settings, raw)

    def _apply(self, settings: LoopSettings, raw: str | None) -> None:
        self.settings = settings
        self._overrides_raw = raw
        self.settings_problem = None
        self.stats.set("settings_overrides_unusable", 0.0)
        self.explorer = make_explorer(settings.explorer, settings.epsilon, settings.softmax_lambda)
        self.candidates.epsilon = settings.epsilon
        if self.pipeline is not None:
            self.pipeline.reconfigure(settings)

    def refresh_model(self) -> str:
        """Serve the model store's active version if it changed; keep the old one if bad.

        Serialised: the background tick and a rollback request may both refresh, and a slow
        load that read the store before a pin must not swap in after the pinned model."""
        with self._refresh_lock:
            return self._refresh_model()

    def _refresh_model(self) -> str:
        latest = self.models.latest()
        if latest is None or latest.version == self._policy.version:
            return self._policy.version
        if latest.version in self._rejected:
            return self._policy.version
        try:
            policy = self._load(latest)
        except ModelRejectedError as exc:
            self._rejected.add(latest.version)
            self.stats.inc("models_rejected_total")
            log.warning("model version %s rejected: %s", latest.version, exc)
            if self._policy is not self.default_policy:
                return self._policy.version  # the previous good version keeps serving
            fallback = self._newest_good(latest.version)
            if fallback is None:
                return self._policy.version
            policy, latest = fallback
        # No explicit close of the old model: a rank that picked it up just before the swap
        # may still be scoring with it; VW frees it when the last reference goes.
        self._policy = policy
        self._policy_label = policy.name
        self.stats.set("model_version", float(latest.version))
        return latest.version

    def _newest_good(self, below: str) -> tuple[Policy, ModelVersion] | None:
        """At start (nothing served yet) with a bad newest version: the newest older one
        that loads, so a corrupt file never puts the untrained default policy back."""
        for version in self.models.versions(FALLBACK_VERSIONS):
            if int(version.version) >= int(below) or version.version in self._rejected:
                continue
            try:
                return self._load(version), version
            except ModelRejectedError as exc:
                self._rejected.add(version.version)
                self.stats.inc("models_rejected_total")
                log.warning("model version %s rejected: %s", version.version, exc)
        return None

    def _load(self, version: ModelVersion) -> Policy:
        _, blob = verified_model(self.models, version.version)
        return load_model_policy(blob, version.version, self._text)

    def activate_model(self, version: str) -> str:
        """Roll back (or forward) to a stored version; new versions are stored, not served."""
        _, blob = verified_model(self.models, version)
        load_model_policy(blob, version, self._text)  # rejects a bad model before pinning it
        self.models.activate(version)
        self._rejected.discard(version)
        return self.refresh_model()

    def reset_model(self) -> str:
        """Start learning afresh: a new, untrained model version (the loop's learner with its
        current settings) serves from now on, and the pipeline, wherever it runs, continues
        learning from it and from the current end of the joined stream (the history is kept
        for evaluations, not relearned). Undo with ``activate_model`` of an older version."""
        from recloop.learning.learners import learner_kind, new_learner

        learner = new_learner(self.settings)
        try:
            meta = {
                "kind": learner_kind(self.settings),
                "args": learner.args,
                "learner_offset": self.joined.end_seq(),
                "examples_learned": 0,
                "reset": True,
            }
            version = self.models.put(learner.snapshot(), meta)
        finally:
            learner.close()
        self.models.follow_newest()
        self.stats.inc("model_resets_total")
        self.refresh_model()
        return version.version

    def _retain(self) -> None:
        """``log_retention_days`` (joined examples) and ``raw_log_retention_days`` (the
        event log, ``recloop.privacy.loops``): delete what has aged out, once a minute."""
        days = self.settings.log_retention_days
        now = self.clock.now()
        if now - self._last_retention < 60.0:
            return
        if days < 0 and self.settings.raw_log_retention_days < 0:
            return
        self._last_retention = now
        if days >= 0:
            self.delete_logs(older_than=days * 86400.0)
        if self.settings.raw_log_retention_days >= 0:
            from recloop.privacy.loops import delete_raw_logs

            self.stats.inc("raw_log_deleted_total", delete_raw_logs(self.settings, self.dir, now))

    def delete_logs(self, older_than: float | None = None) -> int:
        """Delete the joined examples (what evaluations, experiments and exports read) that
        nothing needs any more: learned by the newest learner checkpoint, and joined before
        the oldest decision the joiner could still replay after a crash (so none is ever
        joined twice); with ``older_than`` (seconds), only those joined that long ago (the
        pipeline applies ``log_retention_days`` so). The newest example stays (sequence
        numbers never go back). The event log, recloop's journal of acknowledged calls, is
        kept. Returns how many went."""
        learned = max(
            (int(v.meta["learner_offset"]) for v in self.models.versions(10_000)
             if "learner_offset" in v.meta),
            default=0,
        )  # fmt: skip
        replay_after = self.joined.offset(REPLAY_KEY)
        pending = self.log.read(replay_after, 1)
        bound = pending[0].event.timestamp if pending else math.inf
        if older_than is not None:
            bound = min(bound, self.clock.now() - older_than)
        deleted = self.joined.delete_joined(learned, bound)
        self.stats.inc("joined_deleted_total", deleted)
        return deleted

    def forget_user(self, user_id: str) -> dict[str, Any]:
        """Delete every decision of this loop whose context names the user (see
        ``recloop.privacy``), with its rewards and joined example; returns the counts."""
        from recloop.privacy.loops import forget_in_loop

        return forget_in_loop(self.settings, self.dir, user_id, self.clock.now())

    def follow_latest(self) -> str:
        """Undo a rollback: serve each new version as the learner produces it."""
        self.models.follow_newest()
        return self.refresh_model()

    def model_versions(self) -> list[ModelVersion]:
        return self.models.versions()

    # -- evaluate -------------------------------------------------------------------------
    def register_policy(
        self,
        name: str,
        kind: str,
        params: Mapping[str, Any] | None = None,
        explorer: str = "greedy",
        persist: bool = True,
    ) -> None:
        """Add a candidate policy, evaluated off-policy on every joined example (past too)."""
        self.candidates.register(name, kind, params, explorer, persist)

    def add_candidate(self, name: str, policy: Policy, explorer: Explorer | None = None) -> None:
        """Evaluate any in-process Policy object (past and future joined examples).

        Not persisted (an object cannot be stored): add it again after a restart. Needs the
        evaluators in this process, so not on a "serve"-role loop.
        """
        self.candidates.add_object(name, policy, explorer)

    def unregister_policy(self, name: str) -> None:
        self.candidates.unregister(name)

    def apprentice_report(self, alpha: float = 0.05) -> dict[str, Any]:
        """Apprentice mode's figures, from the pipeline's counters: of the decisions made
        on the baseline, how many the learned policy (scored before it learned from each)
        would have chosen the same, and the rewards of both. The learned policy's estimate
        is its mean reward where it agreed with the baseline: an unbiased estimate of its
        value when the baseline's choice does not depend on the context beyond what the
        learner sees (e.g. an editor's rotating pick)."""
        c = self.stats.get

        def estimate(n: float, total: float, squares: float) -> dict[str, Any]:
            if n < 2:
                return {"value": None, "low": None, "high": None, "n": int(n)}
            # the rewards' mean and its normal interval, as every estimate here is made
            sums = TermSums(n=int(n), sa=total, saa=squares, sv=n, svv=n)
            interval = sums.normal_interval(alpha)
            return {
                "value": interval.value,
                "low": interval.low,
                "high": interval.high,
                "n": int(n),
            }

        events, imitated = c("apprentice_events_total"), c("apprentice_imitated_total")
        return {
            "numberOfEvents": int(events),
            "numberOfImitatedEvents": int(imitated),
            "sumOfRewards": c("apprentice_rewards_total"),
            "sumOfImitatedRewards": c("apprentice_imitated_rewards_total"),
            "baseline": estimate(
                events, c("apprentice_rewards_total"), c("apprentice_rewards_sq_total")
            ),
            "learned": estimate(
                imitated,
                c("apprentice_imitated_rewards_total"),
                c("apprentice_imitated_rewards_sq_total"),
            ),
        }

    def evaluations(self) -> dict[str, Any]:
        if self.role == "serve":
            report = self.shared.evaluations() or OnlineEvaluator().report()
        else:
            report = self.evaluator.report()
        report["loop"] = self.name
        report["model_version"] = self.model_version
        return report

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Run the pipeline and model refresh in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"recloop-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        quiet = FailureLog(log)
        while not self._stop.wait(self.settings.tick_seconds):
            try:
                self.step()
                quiet.recovered(self.name)
            except Exception:  # keep serving; the next tick retries from committed offsets
                self.stats.inc("pipeline_errors_total")
                quiet.failed(self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self.role == "serve":
            self.shared.retire()
        if self.pipeline is not None:
            self.pipeline.close()
        if isinstance(self._policy, VWPolicy):
            self._policy.close()
        self.stores.close()
        if self.items is not None:
            self.items.store.close()
        if self._lease is not None:
            self._lease.release()

    def __enter__(self) -> Loop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["Loop", "UnknownModelError", "to_action"]
