"""Settings changed while a loop runs: stored with the loop (so every process of it, and
every restart, applies them), merged over the settings it was opened with, and handed to
whoever must follow them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from recloop.core.errors import InvalidInputError
from recloop.core.protocols import JoinedStore
from recloop.core.stats import LoopStats
from recloop.settings import LoopSettings, settings_error

log = logging.getLogger(__name__)
OVERRIDES_KEY = "settings.overrides"
RUNTIME_SETTINGS = frozenset(
    {
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
)
"""What :meth:`RuntimeSettings.reconfigure` may change while the loop runs."""


class RuntimeSettings:
    """``current`` is what is in force; ``on_change`` is called with it whenever it changes
    (not for the stored overrides read when the loop opens: nothing is built yet)."""

    def __init__(
        self, name: str, configured: LoopSettings, state: JoinedStore, stats: LoopStats
    ) -> None:
        self.name = name
        self.configured = configured
        """The settings this process was opened with; overrides apply on top of them."""
        self.state = state
        self.stats = stats
        self.problem: str | None = None
        """Why the stored overrides could not be applied (shown by /readyz)."""
        self.on_change: Callable[[LoopSettings], None] = lambda _: None
        self._lock = threading.Lock()
        self._raw = state.get_state(OVERRIDES_KEY)
        stored = self._stored(self._raw) if self._raw is not None else None
        self.current = stored if stored is not None else configured

    def reconfigure(self, changes: Mapping[str, Any]) -> LoopSettings:
        """Merge ``changes`` into the stored overrides and apply them; a new window applies
        to decisions logged after."""
        unknown = sorted(set(changes) - RUNTIME_SETTINGS)
        if unknown:
            raise InvalidInputError(
                f"cannot change {unknown} at run time; can: {sorted(RUNTIME_SETTINGS)}"
            )
        with self._lock:
            raw = self.state.get_state(OVERRIDES_KEY)
            merged = {**(json.loads(raw) if raw else {}), **changes}
            settings = self._merged(merged)
            encoded = json.dumps(merged, sort_keys=True)
            self.state.set_state(OVERRIDES_KEY, encoded)
            self._apply(settings, encoded)
        self.stats.inc("reconfigurations_total")
        return settings

    def sync(self) -> None:
        """Apply overrides another process stored (cheap: one small read per tick)."""
        raw = self.state.get_state(OVERRIDES_KEY)
        if raw == self._raw:
            return
        with self._lock:
            settings = self._stored(raw)
            if settings is None:
                self._raw = raw
                return
            self._apply(settings, raw)

    def _merged(self, overrides: Mapping[str, Any]) -> LoopSettings:
        try:
            return LoopSettings(**{**self.configured.model_dump(), **overrides})
        except ValidationError as exc:
            raise settings_error(exc, LoopSettings) from None

    def _stored(self, raw: str | None) -> LoopSettings | None:
        """The configured settings with the stored overrides, or None if those are
        unusable (logged; the settings in force stay)."""
        try:
            return self._merged(json.loads(raw) if raw else {})
        except (InvalidInputError, json.JSONDecodeError) as exc:
            # an operator's problem, named in one line (and in /readyz), not a traceback:
            # every process of the loop logs it as it reads the overrides
            log.error("stored settings overrides of loop %s are unusable: %s", self.name, exc)
            self.problem = f"stored settings overrides are unusable: {exc}"
            self.stats.set("settings_overrides_unusable", 1.0)
            return None

    def _apply(self, settings: LoopSettings, raw: str | None) -> None:
        self.current = settings
        self._raw = raw
        self.problem = None
        self.stats.set("settings_overrides_unusable", 0.0)
        self.on_change(settings)
