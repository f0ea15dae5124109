"""Azure AI Personalizer's request bodies (camelCase, features as lists of objects), and how
they become a recloop rank call. Only the shapes are Personalizer's; the loop is recloop's."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    WithJsonSchema,
)

from recloop.core.errors import InvalidInputError
from recloop.serving.schemas import FeatureMap
from recloop.settings import MAX_WINDOW_SECONDS, YEAR

Features = list[FeatureMap]
"""Personalizer's features: a list of objects, each one a recloop feature map."""


class PersonalizerAction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=256)
    features: Features = Field(default_factory=list)


class PersonalizerRankRequest(BaseModel):
    """What ``rank_single_slot`` (and v1.0's rank) sends."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    context_features: Features = Field(default_factory=list, alias="contextFeatures")
    actions: list[PersonalizerAction] = Field(min_length=1)
    excluded_actions: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        alias="excludedActions",
        description="Ids of actions in this request not to choose.",
    )
    event_id: str | None = Field(None, min_length=1, max_length=256, alias="eventId")
    defer_activation: StrictBool = Field(False, alias="deferActivation")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("the reward must be a finite number")
    return value


FiniteFloat = Annotated[StrictFloat, AfterValidator(_finite)]
"""A number (an integer too), never a boolean or a numeric string."""


class PersonalizerReward(BaseModel):
    model_config = ConfigDict(extra="ignore")
    value: FiniteFloat


def merge_features(groups: Features, where: str) -> dict[str, Any]:
    """Personalizer's list of feature objects as one recloop feature map. Each object's
    keys keep their names (an object often is a namespace: ``{"user": {...}}``); a name
    that two objects both use gets the later object's index as a suffix."""
    merged: dict[str, Any] = {}
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise InvalidInputError(f"{where}[{i}] must be an object")
        for key, value in group.items():
            merged[key if key not in merged else f"{key}_{i}"] = value
    return merged


class PersonalizerSlot(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    id: str = Field(min_length=1, max_length=100)
    baseline_action: str = Field(min_length=1, alias="baselineAction")
    features: Features = Field(default_factory=list)
    excluded_actions: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        alias="excludedActions",
        description="Ids of actions in this request not to put in this slot.",
    )


class PersonalizerMultiSlotRankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    context_features: Features = Field(default_factory=list, alias="contextFeatures")
    actions: list[PersonalizerAction] = Field(min_length=1)
    slots: list[PersonalizerSlot] = Field(min_length=1)
    event_id: str | None = Field(None, min_length=1, max_length=150, alias="eventId")
    defer_activation: StrictBool = Field(False, alias="deferActivation")


class PersonalizerSlotReward(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    slot_id: str = Field(min_length=1, max_length=100, alias="slotId")
    value: FiniteFloat


class PersonalizerMultiSlotReward(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reward: list[PersonalizerSlotReward] = Field(min_length=1)


# -- documentation only: bodies parsed by hand, answers written by hand ----------------------
# The routes below read these bodies field by field (a field's absence means "unchanged"),
# or write their answers with orjson; these models exist so that the OpenAPI document says
# what those routes accept and answer.


def _duration(what: str, most: float) -> Any:
    """A duration field: ISO 8601 (PT10M), a clock span (00:10:00) or seconds, in range."""
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "exclusiveMinimum": 0, "maximum": most},
            ],
            "description": f"{what}: ISO 8601 (PT10M), a clock span (00:10:00) or seconds; "
            f"more than 0, at most {most:g} s.",
        }
    )


_N = r"\d+(\.\d+)?"
_TIME = rf"T({_N}H({_N}M)?({_N}S)?|{_N}M({_N}S)?|{_N}S)"
DURATION_PATTERN = rf"^(P({_N}D({_TIME})?|{_TIME})|(\d+\.)?\d+:\d+:\d+(\.\d+)?)$"
"""What ``parse_duration`` reads, with at least one number (its range is checked after:
PT0S is refused, and so is a window beyond the loop's maximum)."""


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Optional fields are left out, never sent as null (null is no duration, no mode)."""
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class PersonalizerServiceConfiguration(BaseModel):
    """``PUT configurations/service``: the fields recloop maps (each optional: absent means
    unchanged); any other is ignored."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_absent_not_null)
    reward_wait_time: Annotated[Any, _duration("the reward window", MAX_WINDOW_SECONDS)] = Field(
        None, alias="rewardWaitTime"
    )
    default_reward: Annotated[Any, WithJsonSchema({"type": "number"})] = Field(
        None, alias="defaultReward"
    )
    reward_aggregation: Annotated[
        Any, WithJsonSchema({"enum": ["earliest", "sum", "last"], "type": "string"})
    ] = Field(None, alias="rewardAggregation")
    exploration_percentage: Annotated[
        Any, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1})
    ] = Field(None, alias="explorationPercentage", description="Epsilon.")
    model_export_frequency: Annotated[Any, _duration("how often models are saved", YEAR)] = Field(
        None, alias="modelExportFrequency"
    )
    learning_mode: Annotated[
        Any, WithJsonSchema({"enum": ["Online", "Apprentice", "LoggingOnly"], "type": "string"})
    ] = Field(None, alias="learningMode")
    log_retention_days: Annotated[
        Any,
        WithJsonSchema(
            {"anyOf": [{"const": -1}, {"type": "number", "minimum": 0, "maximum": 36500}]}
        ),
    ] = Field(None, alias="logRetentionDays", description="Days, or -1 (forever).")


class PersonalizerPolicy(BaseModel):
    """``PUT configurations/policy``: VW learning arguments, and the answer of every policy
    route."""

    model_config = ConfigDict(extra="allow")
    name: str | None = None
    arguments: str = Field(
        pattern=r"\S", description="VW learning arguments (an allow-list applies)."
    )


class PersonalizerRankedAction(BaseModel):
    id: str
    probability: float


class PersonalizerRankResponse(BaseModel):
    event_id: str = Field(alias="eventId")
    ranking: list[PersonalizerRankedAction]
    reward_action_id: str = Field(alias="rewardActionId")


class PersonalizerSlotAnswer(BaseModel):
    id: str
    reward_action_id: str = Field(alias="rewardActionId")


class PersonalizerMultiSlotRankResponse(BaseModel):
    event_id: str = Field(alias="eventId")
    slots: list[PersonalizerSlotAnswer]


class PersonalizerInnerError(BaseModel):
    code: str = Field(description="recloop's kind of error (e.g. invalid-input).")


class PersonalizerErrorDetail(BaseModel):
    code: str = Field(description="BadRequest, Unauthorized, ResourceNotFound, Conflict, ...")
    message: str
    inner_error: PersonalizerInnerError | None = Field(None, alias="innerError")


class PersonalizerErrorResponse(BaseModel):
    """Personalizer's error shape: what every Personalizer route answers on an error."""

    error: PersonalizerErrorDetail
