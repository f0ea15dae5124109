"""Configuration as data: defaults < TOML file < RECLOOP_* environment < explicit overrides.

Top-level loop fields configure the default loop and are the defaults for every loop named
under ``[loops.NAME]`` in the TOML file. One module per model: ``loop`` (a decision loop),
``stream`` (the behaviour stream), ``server`` (the server, its keys and limits, and
``load_settings``), ``errors`` (problems as one readable line); the feature generator's own
settings live in ``recloop.features.settings``. Everything is importable from here.
"""

from recloop.features.settings import FeatureSettings
from recloop.settings.errors import settings_error
from recloop.settings.loop import (
    DAY,
    DEFAULT_LEARNER_ARGS,
    DEFAULT_LOOP,
    MAX_REWARD_MAGNITUDE,
    MAX_WINDOW_SECONDS,
    YEAR,
    LoopSettings,
)
from recloop.settings.server import (
    ENV_PREFIX,
    TOOL_PREFIXES,
    TOOL_VARIABLES,
    RateLimitSettings,
    Settings,
    check_environment,
    load_settings,
)
from recloop.settings.stream import StreamSettings

__all__ = [
    "DAY",
    "DEFAULT_LEARNER_ARGS",
    "DEFAULT_LOOP",
    "ENV_PREFIX",
    "MAX_REWARD_MAGNITUDE",
    "MAX_WINDOW_SECONDS",
    "TOOL_PREFIXES",
    "TOOL_VARIABLES",
    "YEAR",
    "FeatureSettings",
    "LoopSettings",
    "RateLimitSettings",
    "Settings",
    "StreamSettings",
    "check_environment",
    "load_settings",
    "settings_error",
]
