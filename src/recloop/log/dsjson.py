"""Decision Service JSON (DSJSON) lines, the format ``vw --cb_explore_adf --dsjson`` reads.

Context features go in namespace ``C`` of the shared object, action features in namespace
``A`` of each ``_multi`` entry (with the action ``id``), matching the text format used for
learning, so offline experiments see the same features as the online learner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from recloop.core.types import JoinedExample, available_actions
from recloop.features.vw_text import ACTION_NAMESPACE, CONTEXT_NAMESPACE


def _flatten(features: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in features.items():
        name = prefix + key
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            for item in value:
                out[f"{name}={item}"] = 1
        elif isinstance(value, bool):
            out[name] = int(value)  # as in the text format: bools are 0/1 numbers
        elif value is not None:
            out[name] = value
    return out


def to_dsjson(example: JoinedExample) -> dict[str, Any]:
    d = example.decision
    acts = available_actions(d.actions, d.excluded)
    index = {a.id: i for i, a in enumerate(acts)}
    chosen = index[d.chosen]
    kept = [(aid, p) for aid, p in zip(d.ranking, d.probabilities, strict=True) if aid in index]
    return {
        "_label_cost": -example.reward,
        "_label_probability": d.probability,
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "o": [{"EventId": d.event_id, "v": example.reward}],
        "Timestamp": datetime.fromtimestamp(d.timestamp, UTC).isoformat(),
        "Version": "1",
        "EventId": d.event_id,
        "a": [index[aid] + 1 for aid, _ in kept],
        "c": {
            CONTEXT_NAMESPACE: _flatten(d.context),
            "_multi": [{ACTION_NAMESPACE: {"id": a.id, **_flatten(a.features)}} for a in acts],
        },
        "p": [p for _, p in kept],
        "VWState": {"m": d.model_version},
        "_recloop": {
            "loop": d.loop,
            "policy": d.policy,
            "used_default": example.used_default,
            "n_rewards": example.n_rewards,
            "deferred": d.deferred,
        },
    }


def dsjson_lines(examples: Iterable[JoinedExample]) -> Iterator[bytes]:
    for ex in examples:
        yield orjson.dumps(to_dsjson(ex))
