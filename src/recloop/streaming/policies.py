"""Which policy ranks the stream's candidates: popularity, a registered kind, or the model a
decision loop serves (so the bandit that learns from rewards also precomputes lists).

``stream.policy`` is ``popularity`` (default), ``KIND[:JSON]`` from the policy registry, or
``loop:NAME``: the loop's active model version from its model store, picked up again when
a new version is activated (checked every ``refresh_seconds``). Until the loop has a model,
candidates keep their popularity order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recloop.core.arrays import FloatArray
from recloop.core.errors import InvalidInputError
from recloop.core.protocols import ModelStore, Policy
from recloop.core.types import Action, Context

if TYPE_CHECKING:
    from recloop.features.catalogue import ItemCatalogue


class LoopModelPolicy:
    """Serves a decision loop's active model (VW or a deep RL agent); reloads it when the
    version changes, and never retries a version that failed to load."""

    def __init__(
        self,
        models: ModelStore,
        loop: str,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        items: ItemCatalogue | None = None,
    ) -> None:
        """``items``: the loop's catalogue, so candidates are scored with the features the
        loop's model learned from (an item id alone means nothing to a text-feature model)."""
        self.name = f"loop:{loop}"
        self._items = items
        self.version = "none"
        self._models = models
        self._refresh = refresh_seconds
        self._clock = clock
        self._checked = -float("inf")
        self._policy: Policy | None = None
        self._rejected: set[str] = set()
        self._lock = threading.Lock()

    def _current(self) -> Policy | None:
        now = self._clock()
        if now - self._checked < self._refresh:
            return self._policy
        self._checked = now
        if self._items is not None:
            self._items.refresh()
        latest = self._models.latest()
        if (
            latest is not None
            and latest.version != self.version
            and latest.version not in self._rejected
        ):
            from recloop.kinds.models import load_model_policy

            _, blob = self._models.get(latest.version)
            try:
                self._policy = load_model_policy(blob, latest.version)
                self.version = latest.version
            except Exception:  # a corrupt version: keep serving the previous one, once
                self._rejected.add(latest.version)
        return self._policy

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        with self._lock:
            policy = self._current()
        if policy is None:
            return np.zeros(len(actions))  # stable sort keeps the popularity order
        if self._items is not None:
            now = context.get("now")
            when = float(now) if isinstance(now, int | float) else time.time()
            actions = self._items.enrich(actions, when)
        return np.asarray(policy.scores(context, actions), dtype=float)


def stream_policy(spec: str, data_dir: Path) -> Policy | None:
    """None means popularity (the processor's default)."""
    if spec in ("", "popularity"):
        return None
    if spec.startswith("loop:"):
        loop = spec.removeprefix("loop:")
        db = Path(data_dir) / loop / "models.db"
        if not loop or not db.exists():
            raise InvalidInputError(f"stream.policy {spec!r}: no model store at {db}")
        from recloop.features.catalogue import ItemCatalogue
        from recloop.features.settings import FeatureSettings
        from recloop.stores.factory import open_loop_files

        models, item_store = open_loop_files(db.parent)
        items = ItemCatalogue(item_store, FeatureSettings()) if item_store is not None else None
        return LoopModelPolicy(models, loop, items=items)
    from recloop.kinds.policies import load_policy

    return load_policy(spec)
