"""The server's settings, built from defaults < TOML file < ``RECLOOP_*`` environment <
explicit overrides; a misspelt variable is refused as a misspelt TOML key is.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from recloop.core.errors import InvalidInputError, UnknownLoopError
from recloop.settings.errors import settings_error
from recloop.settings.loop import DEFAULT_LOOP, LoopSettings
from recloop.settings.stream import StreamSettings


class RateLimitSettings(BaseModel):
    """One API key's own rate limit (TOML ``[rate_limit_keys.NAME]``)."""

    model_config = ConfigDict(extra="forbid")

    per_second: float = Field(ge=0.001, le=1e6, description="Requests per second, sustained.")
    burst: int | None = Field(
        None, ge=1, le=1_000_000, description="Requests at once (unset: one second's worth)."
    )


class Settings(BaseSettings, LoopSettings):
    """Server settings plus the default loop's settings."""

    model_config = SettingsConfigDict(
        env_prefix="RECLOOP_", extra="forbid", env_nested_delimiter="__"
    )

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    max_body_bytes: int = Field(1_000_000, gt=0, le=1 << 30)
    pipeline: Literal["process", "thread", "external"] = Field(
        "process",
        description="process: join/learn/evaluate run in a child process (the server uses "
        "both cores); thread: in the serving process; external: elsewhere (`recloop "
        "pipeline`, or the parent of several `serve --workers`), this server only serves.",
    )
    workers: int = Field(1, ge=1, le=256, description="Serving processes (uvicorn workers).")
    request_read_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=600.0,
        description="A request (headers and body) must arrive whole within this, from its "
        "first byte (or the connection's opening): else 408 and the connection is closed.",
    )
    keep_alive_seconds: float = Field(
        5.0, ge=1, le=600.0, description="Idle keep-alive connections are closed after this."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Concurrent connections and requests per serving process; beyond, 503.",
    )
    rate_limit_per_second: float | None = Field(
        None,
        ge=0.001,
        le=1e6,
        description="Requests per second each API key (each client address when the server "
        "has no keys) may make, sustained; beyond, 429 with Retry-After. Unset: no limit.",
    )
    rate_limit_burst: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Requests a caller may make at once above the rate (the bucket's size); "
        "unset: one second's worth.",
    )
    rate_limit_keys: dict[str, RateLimitSettings] = Field(
        default_factory=dict,
        max_length=10_000,
        description="API key name -> its own limit ({per_second, burst}), in place of the "
        "default; a key named here is limited even when rate_limit_per_second is unset.",
    )
    rate_limit_url: str | None = Field(
        None,
        pattern=r"^(redis|rediss|unix)://",
        description="redis://host:6379/0 to keep the buckets in Redis, shared by every server "
        "(and worker) of the cluster; unset: in each process's memory (N workers: N times "
        "the limit). While Redis is unreachable each process limits on its own.",
    )
    rate_limit_prefix: str = Field(
        "recloop:ratelimit:",
        min_length=1,
        max_length=200,
        description="Redis key prefix of the buckets (clusters sharing one Redis: one each).",
    )
    agents_dir: Path | None = Field(
        None,
        description="POST /v1/policies may register saved agents (kind 'agent') from files "
        "under this folder only; unset: not over HTTP at all.",
    )
    ready_max_lag: int = Field(
        100_000,
        le=10**12,
        ge=1,
        description="/readyz answers 503 while the joiner or the learner is more than this "
        "many records behind the log.",
    )
    audit_keep_entries: int = Field(
        100_000,
        ge=1,
        le=10**9,
        description="The audit log of admin actions keeps this many newest entries.",
    )
    loops: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stream: StreamSettings = Field(default_factory=StreamSettings)

    def loop_names(self) -> list[str]:
        return [DEFAULT_LOOP, *(n for n in self.loops if n != DEFAULT_LOOP)]

    def loop(self, name: str = DEFAULT_LOOP) -> LoopSettings:
        base = {k: getattr(self, k) for k in LoopSettings.model_fields}
        if name != DEFAULT_LOOP and name not in self.loops:
            raise UnknownLoopError(f"no loop named {name!r}; configured: {self.loop_names()}")
        try:
            return LoopSettings(**{**base, **self.loops.get(name, {})})
        except ValidationError as exc:
            raise settings_error(exc, LoopSettings, f"loops.{name}.") from None


ENV_PREFIX = "RECLOOP_"
TOOL_VARIABLES = frozenset(
    {
        "RECLOOP_CONFIG",  # the settings file itself
        "RECLOOP_REQUIRE_SERVICES",  # tests: a skipped service test fails (.ci/run)
        "RECLOOP_ARTIFACTS",  # tests: where the slow stage keeps figures and screenshots
        "RECLOOP_FUZZ_EXAMPLES",  # tests: Schemathesis examples per operation
        "RECLOOP_FUZZ_SEED",
        "RECLOOP_SET_OMP_NUM_THREADS",  # serving/threads.py marks its own OMP_NUM_THREADS
    }
)
"""``RECLOOP_*`` variables that are not settings: the tools' and the tests' own."""
TOOL_PREFIXES = ("RECLOOP_TEST_", "RECLOOP_BENCH_")


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a ``RECLOOP_*`` variable that names no setting, as a misspelt TOML key is
    refused: ``RECLOOP_EPSILN=0.3`` was silently ignored, and the server ran with the
    default. Nested settings (``RECLOOP_STREAM__LOG_URL``) are checked by their model."""
    problems = []
    known = list(Settings.model_fields)
    for variable in sorted(environ):
        upper = variable.upper()  # the names are read case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in TOOL_VARIABLES:
            continue
        if upper.startswith(TOOL_PREFIXES):
            continue
        name = upper[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        hint = " or ".join(ENV_PREFIX + c.upper() for c in close)
        hint = f"; did you mean {hint}?" if hint else ""
        problems.append(f"unknown setting {variable!r}{hint}")
    if problems:
        raise InvalidInputError("invalid settings (environment): " + "; ".join(problems))


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build Settings from a TOML file (or $RECLOOP_CONFIG), the environment and overrides."""
    path = config_file or os.environ.get("RECLOOP_CONFIG")

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
            return tuple(sources)

    clean = {k: v for k, v in overrides.items() if v is not None}
    check_environment(os.environ)
    try:
        settings = _FromFile(**clean)
    except ValidationError as exc:
        raise settings_error(exc, Settings) from None
    for name in settings.loop_names():
        settings.loop(name)  # every configured loop checked now, not at its first request
    return settings
