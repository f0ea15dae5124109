"""Pydantic models: the web API's contract (and its OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
)

from recloop.core.validation import INT_MAX, INT_MIN, MAX_NESTING

# What core.validation accepts, said in JSON Schema: the bodies stay plain dicts for speed
# (validated once, by check_features / check_item_fields), the document says their rules.
NUMBER: dict[str, Any] = {
    "anyOf": [
        # exclusive 2**63 rather than 2**63 - 1: validators that compare as doubles round
        # 2**63 - 1 up to 2**63, and then let 2**63 + 191 through as equal
        {"type": "integer", "minimum": INT_MIN, "exclusiveMaximum": INT_MAX + 1},
        {"type": "number", "not": {"type": "integer"}},
    ],
    "description": "Finite; integers fit in 64 bits.",
}
FLAT_LIST: dict[str, Any] = {"type": "array", "items": {"anyOf": [{"type": "string"}, NUMBER]}}
SCALARS: list[dict[str, Any]] = [
    {"type": "string"},
    {"type": "boolean"},
    {"type": "null"},
    NUMBER,
    FLAT_LIST,
]


def feature_map_schema(depth: int = 0) -> dict[str, Any]:
    """Features: named strings, numbers, booleans, nulls, flat lists, and maps of the same
    nested at most ``MAX_NESTING`` levels (spelled out level by level: JSON Schema has no
    depth limit of its own)."""
    values = SCALARS if depth >= MAX_NESTING else [*SCALARS, feature_map_schema(depth + 1)]
    return {
        "type": "object",
        "propertyNames": {"minLength": 1},
        "additionalProperties": {"anyOf": values},
    }


PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f]+$"
"""No control characters. ``check_event_id`` refuses every non-printable character (format
and private-use ones too), which no portable pattern can list: what JSON Schema can say."""
EVENT_ID_PATH = {"event_id": {"type": "string", "maxLength": 256, "pattern": PRINTABLE}}
"""The ``{event_id}`` path parameter of the reward and activate routes (a multi-slot
decision's is ``<eventId>/<slotId>``: eventIds of 150 at most, so slot ids of 100 fit)."""
EventId = Annotated[
    str, Path(min_length=1, max_length=256, pattern=PRINTABLE, description="The decision's id.")
]

JSON_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "boolean"},
        {"type": "null"},
        {  # what orjson stores: a signed or an unsigned 64-bit integer
            "anyOf": [
                {"type": "integer", "minimum": INT_MIN, "exclusiveMaximum": 2**64},
                {"type": "number", "not": {"type": "integer"}},
            ]
        },
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ],
    "description": "Any JSON, integers within 64 bits (what can be stored).",
}
"""``JsonValue`` in the OpenAPI components (:mod:`recloop.serving.openapi` adds it)."""

FeatureMap = Annotated[dict[str, Any], WithJsonSchema(feature_map_schema())]
"""Ready-made features (a context, an action's): see :func:`feature_map_schema`."""
ItemFields = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"minLength": 1},
            "additionalProperties": {"anyOf": SCALARS},
            "description": "Raw item fields: flat values and flat lists (tags), no maps.",
        }
    ),
]


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=256, description="Unique within the request.")
    features: FeatureMap | None = Field(None, description="Ready-made features, used as they are.")
    fields: ItemFields | None = Field(
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
    fields: ItemFields = Field(description="The item's raw fields.")


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
    context: FeatureMap = Field(default_factory=dict)
    actions: list[ActionIn] = Field(min_length=1)
    event_id: str | None = Field(None, min_length=1, max_length=256)
    excluded_actions: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Ids of actions in this request not to choose."
    )
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
    exploration: dict[str, float | int | str] | None = Field(
        None,
        description="Only when the served policy explores by itself: what it drew (the "
        "score-fusion DDPG: the served weight and its density; DRN interleaving: the list "
        "the reward action came from and the perturbation's seed).",
    )


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


EXPLORERS = ("greedy", "none", "epsilon-greedy", "egreedy", "epsilon", "softmax")
"""The names ``make_explorer`` knows."""


def _params_of(kind: str, key: str) -> dict[str, Any]:
    """``kind`` needs ``params.<key>``, a non-empty string."""
    return {
        "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
        "then": {
            "required": ["params"],
            "properties": {
                "params": {
                    "required": [key],
                    "properties": {key: {"type": "string", "minLength": 1}},
                }
            },
        },
    }


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
            ],
            "allOf": [_params_of("fixed", "action_id"), _params_of("agent", "path")],
        },
    )
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str = Field(
        description="first-action, fixed, uniform, most-popular, vw-cb or agent (another "
        "kind: 404, unknown policy)."
    )
    params: Annotated[
        dict[str, Any],
        WithJsonSchema(
            {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}
        ),
    ] = Field(
        default_factory=dict,
        description="fixed: action_id; vw-cb: args (VW learning options, an allow-list); "
        "agent: path (under the server's agents_dir).",
    )
    explorer: str = Field(
        "greedy",
        description="How the candidate would explore if deployed.",
        json_schema_extra={"enum": list(EXPLORERS)},
    )


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
