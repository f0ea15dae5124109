"""Configuration as data: defaults < TOML file < RECLOOP_* environment < explicit overrides.

Top-level loop fields configure the default loop and are the defaults for every loop named
under ``[loops.NAME]`` in the TOML file.
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
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from recloop.core.errors import InvalidInputError, UnknownLoopError
from recloop.features.spec import KINDS as FIELD_KINDS
from recloop.policies.vw_args import check_learner_args

DEFAULT_LOOP = "default"
DAY = 86400.0
YEAR = 365 * DAY
MAX_WINDOW_SECONDS = 30 * DAY
"""The longest reward window (and stream window): each open window is held in memory."""
DEFAULT_LEARNER_ARGS = "--cb_adf --cb_type mtr -l 0.05 --clip_p 0.1"
MAX_REWARD_MAGNITUDE = 1e9
"""The widest reward range a loop may be given (its bounds, not its default)."""


class FeatureSettings(BaseModel):
    """The feature generator of a loop (TOML ``[loops.NAME.features]``): how raw item fields
    become features. Fields not named in ``fields`` are inferred from their values."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Field name -> kind: text, categorical, numeric, tags, timestamp or id "
        "(the item's id, not a feature).",
    )
    text_dim: int = Field(16, ge=1, le=384, description="Dimensions kept of each embedding.")
    text_reduction: Literal["pca", "random"] = Field(
        "pca",
        description="pca: fitted on the first batch of items (needs more items than "
        "text_dim, else a random projection); random: a seeded projection, no fitting.",
    )
    text_topics: int = Field(8, ge=0, le=256, description="Topic clusters (0: no topic id).")
    text_keywords: int = Field(0, ge=0, le=32, description="Top TF-IDF terms per text.")
    rare_min_count: int = Field(
        2,
        le=1_000_000,
        ge=1,
        description="Category values seen fewer times share one __rare__ bucket.",
    )
    numeric_bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric field.")
    catalogue: Literal["auto", "required", "off"] = Field(
        "auto",
        description="Actions given by id alone: auto = their catalogue features, and an "
        "id the catalogue does not hold is a plain action (counted as catalogue_misses); "
        "required = an unknown id is an error (422 unknown-item); off = ids are plain "
        "actions, the catalogue is not read. Only this setting decides: items stored by "
        "earlier requests never change how a bare id is treated.",
    )
    max_cached_items: int = Field(
        1_000_000,
        le=100_000_000,
        ge=1,
        description="Items kept in each process's memory (the rest: disk).",
    )
    hot_items: int = Field(
        20_000,
        le=10_000_000,
        ge=1,
        description="Of those, items kept decoded, ready to rank (the rest are compact JSON "
        "and decoded on use, a few microseconds).",
    )
    seed: int = 0

    @field_validator("fields")
    @classmethod
    def _kinds(cls, value: dict[str, str]) -> dict[str, str]:
        for name, kind in value.items():
            if kind not in FIELD_KINDS:
                raise ValueError(
                    f"field {name!r} has unknown kind {kind!r}; kinds: {list(FIELD_KINDS)}"
                )
        return value


class LoopSettings(BaseModel):
    """Everything one decision loop needs to know. A name it does not know is an error
    (a misspelt setting would otherwise be ignored and its default silently used)."""

    model_config = ConfigDict(extra="forbid")

    exp_unit_seconds: float = Field(
        10.0,
        gt=0,
        le=MAX_WINDOW_SECONDS,
        description="Reward window after a decision (<= 30 days).",
    )
    default_reward: float = Field(0.0, description="Reward when none arrives in the window.")
    reward_min: float = Field(
        -1.0,
        ge=-MAX_REWARD_MAGNITUDE,
        le=MAX_REWARD_MAGNITUDE,
        description="The smallest reward accepted (a smaller one is refused with 422).",
    )
    reward_max: float = Field(
        1.0,
        ge=-MAX_REWARD_MAGNITUDE,
        le=MAX_REWARD_MAGNITUDE,
        description="The largest reward accepted. One huge reward (1e308 is finite) would "
        "otherwise push the learner's weights to infinity and stop learning for good.",
    )
    reward_aggregation: Literal["earliest", "sum", "last"] = "earliest"
    explorer: Literal["epsilon-greedy", "softmax", "greedy"] = "epsilon-greedy"
    epsilon: float = Field(0.2, ge=0.0, le=1.0)
    softmax_lambda: float = Field(1.0, ge=0.0, le=1e6)
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seeds per-event sampling: (event_id, seed) -> action."
    )
    learning_mode: Literal["online", "apprentice", "logging"] = Field(
        "online",
        description="online: the learned policy decides (explored); apprentice: the first "
        "non-excluded action (the application's baseline) is always chosen, and the learner "
        "learns from it and reports how often it would have chosen the same, and the rewards; "
        "logging: the baseline is chosen and logged, nothing is learned.",
    )
    log_retention_days: float = Field(
        -1.0,
        ge=-1.0,
        le=36500.0,
        description="Joined examples older than this are deleted as they age (only those "
        "nothing needs any more, as Loop.delete_logs); -1 keeps them forever.",
    )
    raw_log_retention_days: float = Field(
        -1.0,
        ge=-1.0,
        le=36500.0,
        description="Raw decisions, rewards, activations and dead letters of the event log "
        "older than this are deleted once the joiner is done with them (never one it could "
        "still need); -1 keeps them forever.",
    )
    user_fields: list[str] = Field(
        default_factory=lambda: ["user_id", "user.id", "userId"],
        max_length=16,
        description="Dotted paths into a decision's context (into each element of a list "
        "context) that hold the user's id: what `recloop users forget` matches.",
    )
    learner: Literal["vw", "drn"] = Field(
        "vw",
        description="The online learner: vw (Vowpal Wabbit contextual bandit) or drn (DRN's "
        "dueling double DQN with DBGD minor updates; needs PyTorch).",
    )
    drn: dict[str, Any] = Field(
        default_factory=dict,
        description="With learner='drn': DRN hyperparameters (gamma, beta, alpha, eta, "
        "major_every, ...) and context_dim, action_dim (hashing widths), user_key.",
    )
    vw_args: str = Field(
        DEFAULT_LEARNER_ARGS,
        description="VW learner arguments. The default's learning rate (0.05, VW's is 0.5) "
        "and probability clip (importance weights at most 10) keep a few rewards of rarely "
        "explored actions from swinging a model version (benchmarks/vw_robustness.py).",
    )
    interactions: list[str] = Field(
        default_factory=lambda: ["CA"],
        description="Quadratic interactions between namespaces (C=context, A=action).",
    )
    default_policy: str = Field("first-action", description="Policy before the first model.")
    default_action_id: str | None = Field(
        None, description="With default_policy='fixed': the action to prefer."
    )
    checkpoint_every_examples: int = Field(1000, ge=1, le=10_000_000)
    checkpoint_every_seconds: float = Field(1.0, gt=0, le=YEAR)
    keep_model_versions: int = Field(
        200,
        le=100_000,
        ge=2,
        description="Older versions are pruned (a pinned one is always kept).",
    )
    join_grace_seconds: float = Field(
        0.25,
        le=3600.0,
        ge=0,
        description="How long after a window closes the joiner waits for stragglers.",
    )
    tick_seconds: float = Field(0.05, ge=0.001, le=60.0, description="Background pipeline cadence.")
    lease_wait_seconds: float = Field(
        10.0,
        le=3600.0,
        ge=0,
        description="How long to wait for another process's pipeline to let go.",
    )
    features: FeatureSettings = Field(
        default_factory=FeatureSettings, description="The feature generator (raw item fields)."
    )
    storage_url: str | None = Field(
        None,
        description="Where the log, joined examples and models live: unset = SQLite files "
        "under data_dir; postgresql://host/db = PostgreSQL (tables shared by all loops).",
    )
    durability: Literal["process", "power"] = Field(
        "process",
        description="process: survives kill -9 (SQLite synchronous=NORMAL); "
        "power: also survives power loss (synchronous=FULL, fsync per commit).",
    )

    @field_validator("vw_args")
    @classmethod
    def _vw_args(cls, value: str) -> str:
        """Learning options only, and ones VW accepts: checked wherever settings come from
        (TOML, environment, Loop.open, reconfigure), before they are stored or used."""
        return check_learner_args(value)

    @field_validator("interactions")
    @classmethod
    def _pairs(cls, value: list[str]) -> list[str]:
        for pair in value:
            if not (len(pair) == 2 and pair.isascii() and pair.isalpha()):
                raise ValueError(
                    f"interaction {pair!r} must name two namespaces by their ASCII letters, "
                    "e.g. 'CA' (a quadratic interaction, -q)"
                )
        return value

    @field_validator("user_fields")
    @classmethod
    def _user_fields(cls, value: list[str]) -> list[str]:
        for path in value:
            parts = path.split(".")
            if not (0 < len(path) <= 128 and path.isascii() and path.isprintable()) or not all(
                parts
            ):
                raise ValueError(
                    f"user field {path!r} must be a dotted path of 1-128 printable ASCII "
                    "characters, e.g. 'user.id'"
                )
        return value

    @field_validator("log_retention_days", "raw_log_retention_days")
    @classmethod
    def _retention(cls, value: float) -> float:
        if value < 0 and value != -1:
            raise ValueError("a number of days (at most 36500), or -1 to keep everything")
        return value

    @model_validator(mode="after")
    def _reward_range(self) -> LoopSettings:
        if not self.reward_min < self.reward_max:
            raise ValueError(
                f"reward_min ({self.reward_min}) must be below reward_max ({self.reward_max})"
            )
        if not self.reward_min <= self.default_reward <= self.reward_max:
            raise ValueError(
                f"default_reward ({self.default_reward}) must lie in "
                f"[reward_min, reward_max] = [{self.reward_min}, {self.reward_max}]"
            )
        return self

    @model_validator(mode="after")
    def _whole_vw_command(self) -> LoopSettings:
        """The arguments VW is started with are vw_args plus the interactions: checked
        (and parsed by VW) as a whole, so a pair VW refuses fails here, not at start."""
        if self.learner == "vw":
            check_learner_args(self.full_vw_args())
        return self

    def full_vw_args(self) -> str:
        return " ".join([self.vw_args, *(f"-q {pair}" for pair in self.interactions)])


class StreamSettings(BaseModel):
    """The behaviour stream: user state, triggers, recommendations (TOML ``[stream]``,
    environment ``RECLOOP_STREAM__FIELD``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    runner: Literal["embedded", "external"] = Field(
        "embedded",
        description="embedded: the server runs the stream (one process holds its lock); "
        "external: `recloop stream` runs it (embedded or --runner flink), the server only "
        "ingests and serves.",
    )
    last_n: int = Field(10, ge=1, le=10_000, description="Recent items kept per user.")
    session_gap_seconds: float = Field(1800.0, gt=0, le=MAX_WINDOW_SECONDS)
    allowed_lateness_seconds: float = Field(60.0, ge=0, le=MAX_WINDOW_SECONDS)
    ttl_seconds: float = Field(
        30 * DAY, gt=0, le=10 * YEAR, description="Forget users idle this long."
    )
    max_future_seconds: float = Field(
        300.0, ge=0, le=DAY, description="Refuse events further ahead."
    )
    min_events: int = Field(
        1, ge=1, le=1_000_000, description="Recommend once a user has this many events."
    )
    k: int = Field(10, ge=1, le=1000, description="Items per precomputed list.")
    candidates: int = Field(100, ge=1, le=100_000, description="Popular items the policy ranks.")
    popularity_half_life_seconds: float = Field(6 * 3600.0, gt=0, le=YEAR)
    policy: str = Field(
        "popularity",
        description="Ranks the candidates: popularity, a policy KIND[:JSON], or loop:NAME "
        "(the model that decision loop serves).",
    )
    stale_after_seconds: float = Field(
        DAY, gt=0, le=YEAR, description="Older lists are stale: the popular fallback is served."
    )
    max_batch_events: int = Field(10_000, ge=1, le=1_000_000)
    log_url: str | None = Field(
        None,
        description="nats://host:4222 to carry behaviour events over NATS JetStream between "
        "processes and machines; default: the embedded SQLite log.",
    )
    nats_stream: str = Field("RECLOOP_EVENTS", description="JetStream stream name.")
    recommendations_url: str | None = Field(
        None, description="redis://... to keep recommendations in Redis; default SQLite."
    )
    recommendations_prefix: str = Field(
        "recloop:recs:",
        min_length=1,
        max_length=200,
        description="Redis key prefix of the lists and the runner's board: several clusters "
        "(or tests) can share one Redis with a prefix each.",
    )
    snapshot_every_events: int = Field(
        200_000,
        le=1_000_000_000,
        ge=1,
        description="State snapshots bound recovery time only: the durable event log is "
        "replayed from the last snapshot's offset after a crash, so nothing is lost between.",
    )
    snapshot_every_seconds: float = Field(10.0, gt=0, le=DAY)


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


def settings_error(
    exc: ValidationError, model: type[BaseModel], where: str = ""
) -> InvalidInputError:
    """A ValidationError as one readable InvalidInputError: each problem with its dotted
    name, and for an unknown name the closest known ones (``did you mean ...``)."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = where + ".".join(loc)
        if error["type"] == "extra_forbidden":
            known = _field_names(model, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            problems.append(f"unknown setting {name!r}{hint}")
        else:
            problems.append(f"{name}: {error['msg']}")
    return InvalidInputError("invalid settings: " + "; ".join(problems))


def _field_names(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the (nested) settings model at ``path``; [] where it is no model."""
    current = model
    for part in path:
        field = current.model_fields.get(part)
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        current = inner
    return list(current.model_fields)


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
