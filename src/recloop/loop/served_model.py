"""The served model: which stored version ranks are scored with. Refresh (a new version,
a bad one kept out), pin (roll back or forward), follow the newest again, reset to an
untrained learner."""

from __future__ import annotations

import logging
import threading

from recloop.core.checksum import verified_model
from recloop.core.errors import ModelRejectedError
from recloop.core.protocols import JoinedStore, ModelStore, ModelVersion, Policy
from recloop.core.stats import LoopStats
from recloop.features.vw_text import VWText
from recloop.kinds.models import learner_kind, load_model_policy
from recloop.loop.slot import PolicySlot
from recloop.policies.vw import VWPolicy
from recloop.settings import LoopSettings

log = logging.getLogger(__name__)
FALLBACK_VERSIONS = 20
"""How many older versions a server tries when the newest is bad and nothing serves yet."""


class ServedModel:
    def __init__(
        self, models: ModelStore, slot: PolicySlot, default: Policy, stats: LoopStats
    ) -> None:
        self.models = models
        self.slot = slot
        self.default = default
        self.stats = stats
        self._rejected: set[str] = set()
        self._lock = threading.Lock()
        self._text = VWText()  # action-line cache shared by every model version served
        slot.serve(default, f"default:{default.name}")

    @property
    def version(self) -> str:
        return self.slot.current.policy.version

    def refresh(self) -> str:
        """Serve the model store's active version if it changed; keep the old one if bad.

        Serialised: the background tick and a rollback request may both refresh, and a slow
        load that read the store before a pin must not swap in after the pinned model."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> str:
        serving = self.slot.current.policy
        latest = self.models.latest()
        if latest is None or latest.version == serving.version:
            return serving.version
        if latest.version in self._rejected:
            return serving.version
        try:
            policy = self._load(latest)
        except ModelRejectedError as exc:
            self._reject(latest.version, exc)
            if serving is not self.default:
                return serving.version  # the previous good version keeps serving
            fallback = self._newest_good(latest.version)
            if fallback is None:
                return serving.version
            policy, latest = fallback
        # No explicit close of the old model: a rank that picked it up just before the swap
        # may still be scoring with it; VW frees it when the last reference goes.
        self.slot.serve(policy, policy.name)
        self.stats.set("model_version", float(latest.version))
        return latest.version

    def _reject(self, version: str, exc: ModelRejectedError) -> None:
        self._rejected.add(version)
        self.stats.inc("models_rejected_total")
        log.warning("model version %s rejected: %s", version, exc)

    def _newest_good(self, below: str) -> tuple[Policy, ModelVersion] | None:
        """At start (nothing served yet) with a bad newest version: the newest older one
        that loads, so a corrupt file never puts the untrained default policy back."""
        for version in self.models.versions(FALLBACK_VERSIONS):
            if int(version.version) >= int(below) or version.version in self._rejected:
                continue
            try:
                return self._load(version), version
            except ModelRejectedError as exc:
                self._reject(version.version, exc)
        return None

    def _load(self, version: ModelVersion) -> Policy:
        _, blob = verified_model(self.models, version.version)
        return load_model_policy(blob, version.version, self._text)

    def pin(self, version: str) -> str:
        """Roll back (or forward) to a stored version; new versions are stored, not served."""
        _, blob = verified_model(self.models, version)
        load_model_policy(blob, version, self._text)  # rejects a bad model before pinning it
        self.models.activate(version)
        self._rejected.discard(version)
        return self.refresh()

    def follow_latest(self) -> str:
        """Undo a pin: serve each new version as the learner produces it."""
        self.models.follow_newest()
        return self.refresh()

    def reset(self, settings: LoopSettings, joined: JoinedStore) -> str:
        """Store a new, untrained version of the loop's learner, marked ``reset`` (the
        pipeline, wherever it runs, continues from it and from the current end of the
        joined stream), and serve it."""
        kind = learner_kind(settings)
        learner = kind.new(settings)
        try:
            meta = {
                "kind": kind.meta_kind,
                "args": learner.args,
                "learner_offset": joined.end_seq(),
                "examples_learned": 0,
                "reset": True,
            }
            version = self.models.put(learner.snapshot(), meta)
        finally:
            learner.close()
        self.models.follow_newest()
        self.stats.inc("model_resets_total")
        self.refresh()
        return version.version

    def close(self) -> None:
        policy = self.slot.current.policy
        if isinstance(policy, VWPolicy):  # its workspace is freed now, not at exit
            policy.close()
