"""JSON encoding of log records. One place, so every backend writes the same bytes."""

from __future__ import annotations

from typing import Any

import orjson

from recloop.core.types import Action, Decision, GeneratedFeatures, ItemRecord, Reward


def _action_to_dict(a: Action) -> dict[str, Any]:
    features = a.features
    if type(features) is GeneratedFeatures and features.key:
        # the catalogue's content key travels with the features: the learner reading the
        # log back caches the item's VW text by it, as the server does
        return {"id": a.id, "features": features, "key": features.key}
    return {"id": a.id, "features": features}


def _action_from_dict(raw: dict[str, Any]) -> Action:
    features = raw.get("features") or {}
    key = raw.get("key")
    if type(key) is str and key:
        return Action(raw["id"], GeneratedFeatures(features, key))
    return Action(raw["id"], features)


def decision_to_dict(d: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": d.event_id,
        "loop": d.loop,
        "timestamp": d.timestamp,
        "context": d.context,
        "actions": [_action_to_dict(a) for a in d.actions],
        "ranking": d.ranking,
        "probabilities": d.probabilities,
        "chosen": d.chosen,
        "chosen_index": d.chosen_index,
        "probability": d.probability,
        "model_version": d.model_version,
        "policy": d.policy,
        "deferred": d.deferred,
        "excluded": d.excluded,
    }
    if d.exploration is not None:  # absent otherwise: older readers see the same record
        out["exploration"] = d.exploration
    return out


def decision_from_dict(raw: dict[str, Any]) -> Decision:
    return Decision(
        event_id=raw["event_id"],
        loop=raw["loop"],
        timestamp=raw["timestamp"],
        context=raw["context"],
        actions=tuple(_action_from_dict(a) for a in raw["actions"]),
        ranking=tuple(raw["ranking"]),
        probabilities=tuple(raw["probabilities"]),
        chosen=raw["chosen"],
        chosen_index=raw["chosen_index"],
        probability=raw["probability"],
        model_version=raw["model_version"],
        policy=raw["policy"],
        deferred=raw.get("deferred", False),
        excluded=tuple(raw.get("excluded", ())),
        exploration=raw.get("exploration"),
    )


def encode_decision(d: Decision) -> bytes:
    return orjson.dumps(decision_to_dict(d))


def decode_decision(blob: bytes) -> Decision:
    return decision_from_dict(orjson.loads(blob))


def encode_reward(r: Reward) -> bytes:
    return orjson.dumps({"value": r.value, "reward_id": r.reward_id})


def decode_reward(event_id: str, ts: float, blob: bytes) -> Reward:
    raw = orjson.loads(blob)
    return Reward(event_id=event_id, value=raw["value"], timestamp=ts, reward_id=raw["reward_id"])


def encode_item_columns(record: ItemRecord) -> tuple[bytes, bytes, bytes]:
    """A catalogue item's (fields, features, times) as every item store keeps them."""
    return (
        orjson.dumps(dict(record.fields)),
        orjson.dumps(dict(record.features)),
        orjson.dumps(list(record.times)),
    )
