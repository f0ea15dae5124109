"""Azure AI Personalizer's request bodies (camelCase, features as lists of objects), and how
they become a recloop rank call. Only the shapes are Personalizer's; the loop is recloop's."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from recloop.core.errors import InvalidInputError

Features = list[dict[str, Any]]


class PersonalizerAction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=256)
    features: Features = Field(default_factory=list)


class PersonalizerRankRequest(BaseModel):
    """What ``rank_single_slot`` (and v1.0's rank) sends."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    context_features: Features = Field(default_factory=list, alias="contextFeatures")
    actions: list[PersonalizerAction] = Field(min_length=1)
    excluded_actions: list[str] = Field(default_factory=list, alias="excludedActions")
    event_id: str | None = Field(None, min_length=1, max_length=256, alias="eventId")
    defer_activation: StrictBool = Field(False, alias="deferActivation")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("the reward must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]


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
    excluded_actions: list[str] = Field(default_factory=list, alias="excludedActions")


class PersonalizerMultiSlotRankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    context_features: Features = Field(default_factory=list, alias="contextFeatures")
    actions: list[PersonalizerAction] = Field(min_length=1)
    slots: list[PersonalizerSlot] = Field(min_length=1)
    event_id: str | None = Field(None, min_length=1, max_length=150, alias="eventId")
    defer_activation: StrictBool = Field(False, alias="deferActivation")


class PersonalizerSlotReward(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    slot_id: str = Field(min_length=1, alias="slotId")
    value: FiniteFloat


class PersonalizerMultiSlotReward(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reward: list[PersonalizerSlotReward] = Field(min_length=1)
