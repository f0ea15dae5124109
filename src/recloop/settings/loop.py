"""A decision loop's settings, and the bounds every loop's settings share."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from recloop.features.settings import FeatureSettings
from recloop.policies.vw_args import check_learner_args

DEFAULT_LOOP = "default"
DAY = 86400.0
YEAR = 365 * DAY
MAX_WINDOW_SECONDS = 30 * DAY
"""The longest reward window (and stream window): each open window is held in memory."""
DEFAULT_LEARNER_ARGS = "--cb_adf --cb_type mtr -l 0.05 --clip_p 0.1"
MAX_REWARD_MAGNITUDE = 1e9
"""The widest reward range a loop may be given (its bounds, not its default)."""


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
    learner: Literal["vw", "drn", "fusion"] = Field(
        "vw",
        description="The online learner: vw (Vowpal Wabbit contextual bandit), fusion (the "
        "score-fusion DDPG: learns the weight a of click * (pay + a * phi) per context; "
        "needs PyTorch) or drn (DRN's "
        "dueling double DQN with DBGD minor updates; needs PyTorch).",
    )
    drn: dict[str, Any] = Field(
        default_factory=dict,
        description="With learner='drn': DRN hyperparameters (gamma, beta, alpha, eta, "
        "major_every, ...) and context_dim, action_dim (hashing widths), user_key.",
    )
    fusion: dict[str, Any] = Field(
        default_factory=dict,
        description="With learner='fusion': the agent's hyperparameters (a_min, a_max, "
        "noise_sigma, warmup_requests, max_step, actor_delay, learning rates, train_every, "
        "...), context_dim (hashing width) and the action features that hold the "
        "predictions (click_feature, pay_feature, phi_feature).",
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
