"""Decision Service JSON (DSJSON) lines, the format ``vw --cb_explore_adf --dsjson`` reads.

Context features go in namespace ``C`` of the shared object, action features in namespace
``A`` of each ``_multi`` entry (with the action's ``id=``), each top-level mapping of an
action (a generated field: ``title``, ``price``...) in its own namespace ``A<key>``:
exactly the features, hashes included, of the text format used for learning, so ``vw
--dsjson`` sees what the online learner saw (categories go as ``"k=v": 1``, since VW would
hash a JSON string ``"k": "v"`` as ``kv``).

Import (:func:`read_dsjson`) inverts the export, so a log can leave one deployment and be
replayed in another (``recloop experiment``). Nested mappings and bags are flattened on the
way out (``user.age``, ``tags=x: 1``) and rebuilt on the way in; the VW text of what comes
back is always the same as the original's, and the records are equal unless a key itself
contains ``.`` or ``=``. What plain DSJSON cannot hold (excluded actions, the exact float
timestamp, when the example was joined) travels in the ``_recloop`` object, which VW ignores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from recloop.core.errors import InvalidInputError
from recloop.core.types import Action, Decision, JoinedExample, available_actions
from recloop.features.vw_text import ACTION_NAMESPACE, CONTEXT_NAMESPACE


def flatten_features(
    features: Mapping[str, Any], prefix: str = "", categories_as_keys: bool = False
) -> dict[str, Any]:
    """Nested maps flattened to ``outer.inner``, bags to ``k=v: 1``, bools to 0/1.

    ``categories_as_keys``: a string value too becomes ``"k=v": 1``, as VW's JSON parser
    must see it to hash it as the text format's ``k=v`` (it would hash ``"k": "v"`` as
    ``kv``)."""
    out: dict[str, Any] = {}
    for key, value in features.items():
        name = prefix + key
        if isinstance(value, Mapping):
            out.update(flatten_features(value, name + ".", categories_as_keys))
        elif categories_as_keys and isinstance(value, str):
            out[f"{name}={value}"] = 1
        elif isinstance(value, list | tuple):
            for item in value:
                out[f"{name}={item}"] = 1
        elif isinstance(value, bool):
            out[name] = int(value)  # as in the text format: bools are 0/1 numbers
        elif value is not None:
            out[name] = value
    return out


def vw_json_features(features: Mapping[str, Any]) -> dict[str, Any]:
    """Features as VW's JSON parser must see them to hash them as the text format does."""
    return flatten_features(features, categories_as_keys=True)


def action_namespaces(action: Action) -> dict[str, Any]:
    """A ``_multi`` entry: namespace ``A`` with the id and the flat features, and one
    namespace ``A<key>`` per top-level mapping, as :func:`~recloop.features.vw_text.action_line`
    writes them."""
    flat: dict[str, Any] = {f"id={action.id}": 1}
    out: dict[str, Any] = {ACTION_NAMESPACE: flat}
    for key, value in action.features.items():
        if isinstance(value, Mapping):
            inner = vw_json_features(value)
            if inner:
                out[f"{ACTION_NAMESPACE}{key}"] = inner
        else:
            flat.update(vw_json_features({key: value}))
    return out


def to_dsjson(example: JoinedExample) -> dict[str, Any]:
    d = example.decision
    acts = available_actions(d.actions, d.excluded)
    index = {a.id: i for i, a in enumerate(acts)}
    chosen = index[d.chosen]
    kept = [(aid, p) for aid, p in zip(d.ranking, d.probabilities, strict=True) if aid in index]
    extension: dict[str, Any] = {
        "loop": d.loop,
        "policy": d.policy,
        "used_default": example.used_default,
        "n_rewards": example.n_rewards,
        "deferred": d.deferred,
        "timestamp": d.timestamp,
        "joined_at": example.joined_at,
        "seq": example.seq,
    }
    if d.excluded:
        # not in _multi (VW must not learn them), but needed to rebuild `actions` and indices
        drop = set(d.excluded)
        extension["excluded"] = list(d.excluded)
        extension["excluded_actions"] = [
            {"index": i, "id": a.id, "features": a.features}
            for i, a in enumerate(d.actions)
            if a.id in drop
        ]
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
            CONTEXT_NAMESPACE: vw_json_features(d.context),
            "_multi": [action_namespaces(a) for a in acts],
        },
        "p": [p for _, p in kept],
        "VWState": {"m": d.model_version},
        "_recloop": extension,
    }


def dsjson_lines(examples: Iterable[JoinedExample]) -> Iterator[bytes]:
    for ex in examples:
        yield orjson.dumps(to_dsjson(ex))


# -- import ---------------------------------------------------------------------------------


def _set_path(root: dict[str, Any], path: list[str], value: Any) -> bool:
    """Put ``value`` at ``root[p0][p1]...``; False if a scalar already sits on the way."""
    node = root
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return False
        node = child
    leaf = path[-1]
    if leaf in node and isinstance(node[leaf], dict):
        return False
    node[leaf] = value
    return True


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Invert :func:`flatten_features`: ``a.b`` becomes nested, ``k=v: 1`` the bag ``k: [v]``.

    A key that cannot be placed (a scalar and a namespace under one name) stays flat: its
    VW text is the same either way.
    """
    out: dict[str, Any] = {}
    values: dict[str, int] = {}
    for key, value in flat.items():
        name, _, _ = key.partition("=")
        if "=" in key and type(value) is int and value == 1 and name:
            values[name] = values.get(name, 0) + 1
    for key, value in flat.items():
        name, sep, item = key.partition("=")
        if sep and type(value) is int and value == 1 and name:
            path = name.split(".")
            node: Any = out
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, list):
                node.append(item)
                continue
            # one value: a category (a one-tag bag reads back as a category: same VW text)
            if node is None and _set_path(out, path, item if values[name] == 1 else [item]):
                continue
        elif _set_path(out, key.split("."), value):
            continue
        out[key] = value
    return out


def _need(obj: Mapping[str, Any], key: str, kind: tuple[type, ...]) -> Any:
    if key not in obj:
        raise InvalidInputError(f"missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kind):
        raise InvalidInputError(f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def _timestamp(raw: Mapping[str, Any], ext: Mapping[str, Any]) -> float:
    exact = ext.get("timestamp")
    if isinstance(exact, int | float) and not isinstance(exact, bool):
        return float(exact)
    text = raw.get("Timestamp")
    if not isinstance(text, str):
        return 0.0
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError(f"'Timestamp' is not ISO 8601: {text!r}") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _multi_action(entry: Any, i: int) -> Action:
    """Invert :func:`action_namespaces` (and read the ``{"A": {"id": ...}}`` of older
    exports and other producers)."""
    if not isinstance(entry, Mapping):
        raise InvalidInputError(f"'_multi' entry {i} is not an object")
    features = entry.get(ACTION_NAMESPACE, entry)
    if not isinstance(features, Mapping):
        raise InvalidInputError(f"'_multi' entry {i} has no {ACTION_NAMESPACE!r} namespace")
    flat = dict(features)
    action_id = flat.pop("id", None)
    if action_id is None:
        marked = next((k for k, v in flat.items() if k.startswith("id=") and v == 1), None)
        if marked is not None:
            action_id = marked.removeprefix("id=")
            del flat[marked]
    out = _unflatten(flat)
    if ACTION_NAMESPACE in entry:
        for name, value in entry.items():
            if name.startswith(ACTION_NAMESPACE) and name != ACTION_NAMESPACE:
                if not isinstance(value, Mapping):
                    raise InvalidInputError(f"'_multi' entry {i}: {name!r} is not an object")
                out[name.removeprefix(ACTION_NAMESPACE)] = _unflatten(value)
    return Action(str(action_id) if action_id is not None else str(i), out)


def from_dsjson(raw: Mapping[str, Any], default_seq: int = 0) -> JoinedExample:
    """Invert :func:`to_dsjson`. Lines written elsewhere (no ``_recloop`` object) get the
    defaults: reward ``-_label_cost``, one reward, loop ``default``, policy ``unknown``."""
    ext = raw.get("_recloop") or {}
    if not isinstance(ext, Mapping):
        raise InvalidInputError("'_recloop' is not an object")
    event_id = _need(raw, "EventId", (str,))
    cost = _need(raw, "_label_cost", (int, float))
    probability = float(_need(raw, "_label_probability", (int, float)))
    if not 0.0 < probability <= 1.0:
        raise InvalidInputError(f"'_label_probability' must be in (0, 1], got {probability}")
    c = _need(raw, "c", (dict,))
    multi = _need(c, "_multi", (list,))
    acts = [_multi_action(entry, i) for i, entry in enumerate(multi)]
    if not acts:
        raise InvalidInputError("'_multi' has no actions")
    chosen = raw.get("_labelIndex")
    if chosen is None:
        chosen = _need(raw, "_label_Action", (int,)) - 1
    if not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 <= chosen < len(acts):
        raise InvalidInputError(f"the chosen action index {chosen!r} is not in '_multi'")
    order = raw.get("a") or [chosen + 1]
    probs = raw.get("p") or [probability]
    if not isinstance(order, list) or not isinstance(probs, list) or len(order) != len(probs):
        raise InvalidInputError("'a' and 'p' must be lists of one length")
    try:
        ranking = [acts[int(i) - 1].id for i in order]
    except (IndexError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"'a' names an action not in '_multi': {order}") from exc
    context = c.get(CONTEXT_NAMESPACE)
    if context is None:
        context = {k: v for k, v in c.items() if k != "_multi"}
    if not isinstance(context, Mapping):
        raise InvalidInputError(f"context namespace {CONTEXT_NAMESPACE!r} is not an object")
    excluded = tuple(str(x) for x in ext.get("excluded", ()))
    actions = list(acts)
    for index, item in _excluded_actions(ext.get("excluded_actions", []), len(acts)):
        actions.insert(index, Action(str(item["id"]), item.get("features") or {}))
    chosen_id = acts[chosen].id
    state = raw.get("VWState")
    decision = Decision(
        event_id=event_id,
        loop=str(ext.get("loop", "default")),
        timestamp=_timestamp(raw, ext),
        context=_unflatten(context),
        actions=tuple(actions),
        ranking=(*ranking, *excluded),
        probabilities=(*(float(p) for p in probs), *([0.0] * len(excluded))),
        chosen=chosen_id,
        chosen_index=next(i for i, a in enumerate(actions) if a.id == chosen_id),
        probability=probability,
        model_version=str(state.get("m", "")) if isinstance(state, Mapping) else "",
        policy=str(ext.get("policy", "unknown")),
        deferred=bool(ext.get("deferred", False)),
        excluded=excluded,
    )
    joined_at = ext.get("joined_at", decision.timestamp)
    return JoinedExample(
        decision=decision,
        reward=-float(cost),
        n_rewards=int(ext.get("n_rewards", 1)),
        used_default=bool(ext.get("used_default", False)),
        joined_at=float(joined_at),
        seq=int(ext.get("seq", default_seq)),
    )


def parse_dsjson_line(line: bytes | str, line_number: int | None = None) -> JoinedExample:
    """One DSJSON line back to a JoinedExample; InvalidInputError (with the line number,
    if given) when it is not one. Lines without ``_recloop.seq`` take the line number."""
    where = f"DSJSON line {line_number}" if line_number is not None else "DSJSON line"
    try:
        raw = orjson.loads(line)
        if not isinstance(raw, dict):
            raise InvalidInputError("not a JSON object")
        return from_dsjson(raw, line_number or 0)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{where}: not JSON ({exc})") from exc
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from exc
    except (KeyError, TypeError, ValueError, StopIteration) as exc:
        raise InvalidInputError(f"{where}: malformed ({type(exc).__name__}: {exc})") from exc


def read_dsjson(path: Path | str) -> Iterator[JoinedExample]:
    """Stream the joined examples of a DSJSON file in file order (blank lines skipped), so
    a large log replays in constant memory."""
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            yield parse_dsjson_line(line, number)


def _excluded_actions(items: Any, ranked: int) -> list[tuple[int, Mapping[str, Any]]]:
    """The excluded actions of a line, with where each goes back into the action list,
    sorted by it. An index must place the action within the list it is inserted into (from
    0 to the actions ranked plus those placed before it): a hostile line with an index of
    2**63 or -5 is invalid input, not an overflow or an action put back in the wrong place."""
    if not isinstance(items, list):
        raise InvalidInputError("'excluded_actions' must be a list")
    placed: list[tuple[int, Mapping[str, Any]]] = []
    for item in items:
        index = item.get("index") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or "id" not in item or type(index) is not int:
            raise InvalidInputError("each excluded action must be {'id', 'index': integer}")
        placed.append((index, item))
    placed.sort(key=lambda p: p[0])
    for n, (index, _) in enumerate(placed):
        if not 0 <= index <= ranked + n:
            raise InvalidInputError(f"excluded action index {index} is outside the action list")
    return placed
