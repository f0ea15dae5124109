"""Pydantic models: the web API's contract (and its OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=256, description="Unique within the request.")
    features: dict[str, Any] | None = Field(
        None, description="Ready-made features, used as they are."
    )
    fields: dict[str, Any] | None = Field(
        None,
        description="Raw item fields (title, price, tags, ...), featurized by the loop's "
        "feature spec and cached with the item. With neither features nor fields, the "
        "item's catalogue features are used.",
    )


class ItemIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "fields": {
                        "title": "Striker scores twice in the derby",
                        "price": 0,
                        "tags": ["sports", "football"],
                        "published_at": "2026-12-01T08:30:00Z",
                    }
                }
            ]
        },
    )
    fields: dict[str, Any] = Field(description="The item's raw fields.")


class ItemEntry(ItemIn):
    id: str = Field(min_length=1, max_length=256)


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemEntry] = Field(min_length=1, max_length=10_000)


class ItemOut(BaseModel):
    id: str
    content_hash: str
    changed: bool | None = Field(
        None, description="On a write: false when the content was already featurized."
    )
    features: dict[str, Any]
    fields: dict[str, Any] | None = None
    updated_at: float | None = None


class RankRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "context": {"user": {"age": "adult"}, "time": "morning"},
                    "actions": [
                        {"id": "politics", "features": {"topic": "politics"}},
                        {"id": "sports", "features": {"topic": "sports"}},
                    ],
                }
            ]
        },
    )
    context: dict[str, Any] = Field(default_factory=dict)
    actions: list[ActionIn] = Field(min_length=1)
    event_id: str | None = Field(None, min_length=1, max_length=256)
    excluded_actions: list[str] = Field(default_factory=list)
    defer_activation: StrictBool = False


class RankedAction(BaseModel):
    id: str
    probability: float


class RankResponse(BaseModel):
    event_id: str
    ranking: list[RankedAction]
    reward_action_id: str
    model_version: str
    policy: str


class RewardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: StrictFloat | StrictInt = Field(description="A finite number; higher is better.")
    reward_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Idempotency key: a retried reward with the same id is not counted twice.",
    )


class Accepted(BaseModel):
    event_id: str
    status: str = "accepted"


class ModelOut(BaseModel):
    version: str
    created: float
    sha256: str
    meta: dict[str, Any]
    serving: bool


class ModelsOut(BaseModel):
    serving: str
    pinned: str | None
    versions: list[ModelOut]


class PolicyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "always-sports", "kind": "fixed", "params": {"action_id": "sports"}},
                {
                    "name": "vw-ips",
                    "kind": "vw-cb",
                    "params": {"args": "--cb_adf --cb_type ips -q CA"},
                },
            ]
        },
    )
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str = Field(description="first-action, fixed, uniform, most-popular or vw-cb.")
    params: dict[str, Any] = Field(default_factory=dict)
    explorer: str = Field("greedy", description="How the candidate would explore if deployed.")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
