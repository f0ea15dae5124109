"""The in-process client library: ``Loop`` ranks, logs, takes rewards and learns.

The web API is a thin layer over this class, so both have the same semantics. ``Loop`` is
a facade: each job is done by one part of ``recloop.loop`` (deciding, the served model,
run-time settings, candidates, items, the pipeline and its lease, retention), assembled
here; nothing else lives here but the order of a tick.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import ValidationError

from recloop.core.clock import Clock, SystemClock
from recloop.core.errors import DuplicateEventError
from recloop.core.protocols import Explorer, ModelVersion, Policy
from recloop.core.stats import LoopStats
from recloop.core.types import Decision, ItemRecord
from recloop.evaluation.online import OnlineEvaluator
from recloop.features.catalogue import ItemCatalogue, PutResult
from recloop.kinds.models import learner_kind
from recloop.kinds.policies import make_policy
from recloop.learning.pipeline import Pipeline
from recloop.learning.sharing import SharedFigures
from recloop.loop.candidates import CandidateRegistry
from recloop.loop.deciding import ActionLike, Decider
from recloop.loop.figures import apprentice_report
from recloop.loop.items import LoopItems
from recloop.loop.pipeline_host import PipelineHost
from recloop.loop.retention import Retention
from recloop.loop.runtime_settings import RuntimeSettings
from recloop.loop.served_model import ServedModel
from recloop.loop.slot import PolicySlot
from recloop.loop.ticker import Ticker
from recloop.settings import DEFAULT_LOOP, LoopSettings, settings_error
from recloop.stores.factory import open_item_store, open_stores

__all__ = ["ActionLike", "Loop", "Role"]
Role = Literal["all", "serve", "pipeline"]


class Loop:
    """One decision loop, embedded: SQLite files under ``data_dir/<name>/``.

    ``role``: "all" serves and runs the join/learn/evaluate pipeline (a library user's
    default); "serve" only ranks and logs, and reads what a "pipeline" process on the same
    data publishes (how ``recloop serve`` uses both cores).

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
        self.name, self.role = name, role
        configured = settings or LoopSettings()
        learner_kind(configured).check(configured)  # bad parameters fail before files open
        self.clock: Clock = clock or SystemClock()
        self.dir = Path(data_dir) / name
        self.stats = LoopStats()
        self.stores = open_stores(configured, self.dir)
        self.items: ItemCatalogue | None = None
        """The item catalogue (raw fields -> cached features); None in a pipeline process."""
        try:
            self._build(configured)
        except BaseException:  # a standby retries every second, a bad setting is fixed and
            if self.items is not None:  # the loop opened again: leak no connection, no file
                self.items.store.close()
            self.stores.close()
            raise

    def _build(self, configured: LoopSettings) -> None:
        self.log, self.joined, self.models = self.stores.log, self.stores.joined, self.stores.models
        self.runtime = RuntimeSettings(self.name, configured, self.joined, self.stats)
        settings = self.runtime.current  # the stored overrides, before anything is built
        if self.role != "pipeline":
            self.items = ItemCatalogue(
                open_item_store(settings, self.dir), settings.features, self.stats
            )
        self.catalogue = LoopItems(self.items, self.stats)
        params = {"action_id": settings.default_action_id} if settings.default_action_id else {}
        self.default_policy: Policy = make_policy(settings.default_policy, params)
        slot = PolicySlot(self.default_policy, "")
        self.served = ServedModel(self.models, slot, self.default_policy, self.stats)
        self.decider = Decider(
            self.name, self.log, self.items, slot, settings, self.clock, self.stats
        )
        self.evaluator = OnlineEvaluator()
        self._pipeline_lock = threading.Lock()
        runs_pipeline = self.role != "serve"
        self.candidates = CandidateRegistry(
            self.joined, self.evaluator, settings.epsilon, runs_pipeline, self._pipeline_lock
        )
        self.shared = SharedFigures(self.joined, self.stats)
        self.retention = Retention(
            self.dir, self.log, self.joined, self.models, self.clock, self.stats
        )
        self.host = PipelineHost(
            self.name, self.dir, self.log, self.joined, self.models, self.evaluator,
            self.candidates, self.clock, self.stats, retakes=self.role == "all",
        )  # fmt: skip
        if runs_pipeline:
            self.host.open(settings, settings.lease_wait_seconds)
        self.runtime.on_change = self._follow
        self.ticker = Ticker(self.name, self.step, lambda: self.settings.tick_seconds, self.stats)
        if self.role != "pipeline":
            self.stats.set("model_version", 0.0)  # 0 = the default policy, no model yet
            self.served.refresh()

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

    def _follow(self, settings: LoopSettings) -> None:
        """Run-time settings changed: everything built from them follows."""
        self.decider.configure(settings)
        self.candidates.epsilon = settings.epsilon
        self.host.reconfigure(settings)

    # -- what the loop is now ---------------------------------------------------------------
    @property
    def settings(self) -> LoopSettings:
        """The settings in force: as opened, with the run-time overrides."""
        return self.runtime.current

    @property
    def configured_settings(self) -> LoopSettings:
        """The settings the loop was opened with, before run-time overrides."""
        return self.runtime.configured

    @property
    def settings_problem(self) -> str | None:
        """Why the stored run-time settings could not be applied (shown by /readyz)."""
        return self.runtime.problem

    @property
    def explorer(self) -> Explorer:
        return self.decider.explorer

    @property
    def model_version(self) -> str:
        return self.served.version

    @property
    def pipeline(self) -> Pipeline | None:
        """None in a process that does not hold the loop's pipeline lease."""
        return self.host.pipeline

    # -- decide (recloop.loop.deciding) -----------------------------------------------------
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
            return self.decider.rank(context, actions, event_id, excluded_actions, defer_activation)
        except DuplicateEventError:
            self.stats.inc("rejected_total:duplicate-event")
            raise

    def reward(self, event_id: str, value: float, reward_id: str | None = None) -> None:
        """Log a reward for an event. Several may arrive; ``reward_id`` makes retries safe."""
        self.decider.reward(event_id, value, reward_id)

    def activate(self, event_id: str) -> None:
        """Mark a deferred decision as shown, so it is learned from. Idempotent."""
        self.decider.activate(event_id)

    # -- one tick ---------------------------------------------------------------------------
    def step(self) -> int:
        """Run the pipeline once (join, learn, evaluate) and pick up a new model."""
        self.runtime.sync()
        if self.role != "serve":
            self.host.check_lease(self.settings)
        joined = 0
        pipeline: Pipeline | None = self.host.pipeline
        if pipeline is not None:
            with self._pipeline_lock:
                if self.role == "pipeline":
                    self.candidates.sync()
                joined = pipeline.step()
                self.retention.apply(self.settings)
                if self.role == "pipeline":
                    self.shared.publish_pipeline(self.evaluator.report())
        else:
            self.shared.exchange_serving()
        if self.role != "pipeline":
            self.served.refresh()
            if self.items is not None:
                self.items.refresh()
        return joined

    # -- items (recloop.loop.items) ---------------------------------------------------------
    def put_item(self, item_id: str, fields: Mapping[str, Any]) -> PutResult:
        """Add or update a catalogue item from its raw fields; features are computed (once
        per content) by the loop's feature spec, and used when a rank call names the id."""
        return self.catalogue.put([(item_id, fields)])[0]

    def put_items(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[PutResult]:
        return self.catalogue.put(items)

    def get_item(self, item_id: str) -> ItemRecord | None:
        return self.catalogue.get(item_id)

    def delete_item(self, item_id: str) -> bool:
        return self.catalogue.delete(item_id)

    def list_items(self, after: str = "", limit: int = 100) -> list[ItemRecord]:
        return self.catalogue.page(after, limit)

    def refit_features(self, fit_sample: int = 20_000) -> int:
        return self.catalogue.refit(fit_sample)

    def explain_features(self) -> list[dict[str, str]]:
        return self.catalogue.explain()

    # -- settings and models (recloop.loop.runtime_settings, served_model) ----------------
    def reconfigure(self, **changes: Any) -> LoopSettings:
        """Change settings of the running loop (``RUNTIME_SETTINGS``); every process of it
        applies them within a tick, and they outlive restarts. New VW arguments start a new
        learner, which learns the whole joined history again with them."""
        return self.runtime.reconfigure(changes)

    def refresh_model(self) -> str:
        return self.served.refresh()

    def activate_model(self, version: str) -> str:
        """Roll back (or forward) to a stored version; new versions are stored, not served."""
        return self.served.pin(version)

    def follow_latest(self) -> str:
        """Undo a rollback: serve each new version as the learner produces it."""
        return self.served.follow_latest()

    def reset_model(self) -> str:
        """Start learning afresh from an untrained version of the loop's learner, from the
        current end of the joined stream. Undo with ``activate_model`` of an older one."""
        return self.served.reset(self.settings, self.joined)

    def model_versions(self) -> list[ModelVersion]:
        return self.models.versions()

    # -- retention (recloop.loop.retention) -------------------------------------------------
    def delete_logs(self, older_than: float | None = None) -> int:
        """Delete the joined examples nothing needs any more (see ``Retention``)."""
        return self.retention.delete_joined(older_than)

    def forget_user(self, user_id: str) -> dict[str, Any]:
        """Delete every decision of this loop whose context names the user."""
        return self.retention.forget_user(self.settings, user_id)

    # -- evaluate (recloop.loop.candidates, figures) ----------------------------------------
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
        """Evaluate an in-process Policy object (not persisted; not on a "serve" loop)."""
        self.candidates.add_object(name, policy, explorer)

    def unregister_policy(self, name: str) -> None:
        self.candidates.unregister(name)

    def apprentice_report(self, alpha: float = 0.05) -> dict[str, Any]:
        return apprentice_report(self.stats, alpha)

    def evaluations(self) -> dict[str, Any]:
        if self.role == "serve":
            report = self.shared.evaluations() or OnlineEvaluator().report()
        else:
            report = self.evaluator.report()
        report["loop"] = self.name
        report["model_version"] = self.model_version
        return report

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Run the pipeline and model refresh in a background thread."""
        self.ticker.start()

    def stop(self) -> None:
        self.ticker.stop()

    def close(self) -> None:
        self.stop()
        if self.role == "serve":
            self.shared.retire()
        self.host.close()
        self.served.close()
        self.stores.close()
        if self.items is not None:
            self.items.store.close()
        self.host.release()

    def __enter__(self) -> Loop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
