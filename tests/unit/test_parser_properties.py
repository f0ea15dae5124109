"""Hostile input to every parser of outside data: whatever arrives either parses or raises the
typed error (InvalidInputError, or MalformedJSONError for what is not JSON at all), never
anything else, which the web API would answer with a 500 and the CLI with a traceback.

Parsers: DSJSON import (``parse_dsjson_line``), JSON-lines item import (``read_items`` then
the catalogue's ``put``), Personalizer's bodies and features (``parse_body``,
``merge_features`` and the checks a rank applies), durations and the service configuration
(``parse_duration``, ``configuration_changes``). Each test runs a few hundred examples in
about a second; ``pytest --hypothesis-show-statistics`` prints how many each ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recloop.cli.items import read_items
from recloop.core.errors import InvalidInputError, MalformedJSONError
from recloop.core.stats import LoopStats
from recloop.core.types import Action, Decision, JoinedExample
from recloop.core.validation import check_actions, check_features
from recloop.features.catalogue import ItemCatalogue
from recloop.log.dsjson import parse_dsjson_line, to_dsjson
from recloop.serving.personalizer_schemas import (
    PersonalizerMultiSlotRankRequest,
    PersonalizerRankRequest,
    merge_features,
)
from recloop.serving.routes.personalizer_admin import configuration_changes, parse_duration
from recloop.serving.routes.personalizer_routing import parse_body
from recloop.settings import FeatureSettings, LoopSettings
from recloop.stores.factory import open_item_store

TYPED = (InvalidInputError, MalformedJSONError)
FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

NAMES = st.text(max_size=6) | st.sampled_from(["id", "A", "C", "_multi", "index", "a.b", "k=v"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats(allow_nan=True, allow_infinity=True)  # NaN, Infinity: stdlib json writes them
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=24,
)


def _text(value: Any) -> bytes:
    return json.dumps(value).encode()


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


LINES = st.binary(max_size=200) | JSON.map(_text) | st.integers(1, 3000).map(_deep)


# -- DSJSON import --------------------------------------------------------------------------


def _valid_dsjson() -> dict[str, Any]:
    actions = (
        Action("a", {"topic": "x", "n": 1.5, "tags": ["t1", "t2"], "m": {"k": "v"}}),
        Action("b", {"topic": "y"}),
        Action("c", {}),
    )
    decision = Decision(
        event_id="e1",
        loop="default",
        timestamp=1_700_000_000.0,
        context={"user": {"age": "adult"}, "hour": 9},
        actions=actions,
        ranking=("b", "a"),
        probabilities=(0.8, 0.2),
        chosen="b",
        chosen_index=1,
        probability=0.8,
        model_version="3",
        policy="vw",
        excluded=("c",),
    )
    return to_dsjson(JoinedExample(decision, 1.0, 1, False, 1_700_000_010.0, seq=7))


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*at, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


VALID = _valid_dsjson()


def test_the_valid_line_parses() -> None:
    example = parse_dsjson_line(orjson.dumps(VALID))
    assert example.decision.chosen == "b" and example.reward == 1.0


@pytest.mark.parametrize("index", [2**63, -5, 9.223372036854776e18, 1.0, True, "1", None, 99])
def test_an_excluded_action_placed_outside_the_action_list_is_invalid_input(index: Any) -> None:
    """Found by the property below: an index of 2**63 (or the float 9.2e18) was an
    OverflowError from ``list.insert``, a negative one put the action back in the wrong
    place without a word."""
    line = _replace(VALID, ("_recloop", "excluded_actions", 0, "index"), index)
    with pytest.raises(InvalidInputError, match="excluded action"):
        parse_dsjson_line(orjson.dumps(line), 1)


@FAST
@given(line=LINES)
def test_any_line_is_a_dsjson_example_or_invalid_input(line: bytes) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_dsjson_line(line, 1)


@FAST
@given(data=st.data())
def test_a_valid_line_with_any_part_replaced_parses_or_is_invalid_input(data: Any) -> None:
    """One field of a real export replaced with any JSON (a type, a range, a shape)."""
    path = data.draw(st.sampled_from(_paths(VALID)))
    line = _text(_replace(VALID, path, data.draw(JSON)))
    with contextlib.suppress(InvalidInputError):
        parse_dsjson_line(line, 1)


# -- JSON-lines item import -----------------------------------------------------------------


class HashEmbedder:
    """Text embeddings without the model: a unit vector seeded by the text's hash."""

    dim = 8

    def embed(self, texts: Any) -> Any:
        import numpy as np

        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), self.dim)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True).clip(1e-12)


@pytest.fixture
def catalogue(tmp_path: Path) -> Any:
    settings = LoopSettings(features=FeatureSettings(text_dim=2, text_topics=2))
    store = open_item_store(settings, tmp_path)
    yield ItemCatalogue(store, settings.features, LoopStats(), HashEmbedder())
    store.close()


ITEM_LINES = (
    st.binary(max_size=120)
    | JSON.map(_text)
    | st.dictionaries(NAMES, JSON, max_size=5).map(lambda d: _text({"id": "x", **d}))
    | st.dictionaries(NAMES, JSON, max_size=5).map(lambda d: _text({"id": 7, "fields": d}))
    | st.integers(1, 3000).map(_deep)
)


@FAST
@given(lines=st.lists(ITEM_LINES, min_size=1, max_size=5))
def test_any_items_file_imports_or_is_refused_line_by_line(
    tmp_path: Path, catalogue: ItemCatalogue, lines: list[bytes]
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    for _, item_id, fields in read_items(path, "id"):
        if item_id is None:
            assert "error" in fields or fields is not None
            continue
        with contextlib.suppress(InvalidInputError):
            catalogue.put([(item_id, fields)])


# -- Personalizer bodies and features --------------------------------------------------------


class _Request:
    """What ``parse_body`` reads of a request: its body."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def body(self) -> bytes:
        return self.raw


def _rank_input(raw: bytes, model: Any) -> None:
    """A Personalizer rank body as far as the loop's checks: what ``_rank`` does before
    anything is logged."""
    body = asyncio.run(parse_body(_Request(raw), model))  # type: ignore[arg-type]
    context = merge_features(body.context_features, "contextFeatures")
    actions = [Action(a.id, merge_features(a.features, f"actions.{a.id}")) for a in body.actions]
    check_features(context, "context")
    check_actions(actions, getattr(body, "excluded_actions", []))


FEATURE_GROUPS = st.lists(st.dictionaries(NAMES, JSON, max_size=4) | JSON, max_size=4)
RANK_BODIES = st.fixed_dictionaries(
    {
        "contextFeatures": FEATURE_GROUPS,
        "actions": st.lists(
            st.fixed_dictionaries({"id": st.text(max_size=4), "features": FEATURE_GROUPS}) | JSON,
            max_size=3,
        ),
    },
    optional={"excludedActions": JSON, "eventId": JSON, "slots": JSON},
)


@FAST
@given(groups=FEATURE_GROUPS)
def test_personalizer_features_merge_or_are_invalid_input(groups: list[Any]) -> None:
    with contextlib.suppress(InvalidInputError):
        check_features(merge_features(groups, "contextFeatures"), "context")


@FAST
@given(raw=LINES | RANK_BODIES.map(_text), multislot=st.booleans())
def test_any_personalizer_rank_body_parses_or_is_refused(raw: bytes, multislot: bool) -> None:
    model = PersonalizerMultiSlotRankRequest if multislot else PersonalizerRankRequest
    with contextlib.suppress(TYPED):
        _rank_input(raw, model)


# -- durations and the service configuration -------------------------------------------------

DURATIONS = (
    JSON
    | st.from_regex(r"P(\d{1,30}(\.\d{0,3})?[DHMS]){0,3}(T(\d{1,400}(\.\d{1,3})?[HMS]){0,3})?")
    | st.from_regex(r"(\d{1,30}\.)?\d{1,30}:\d{1,30}:\d{1,30}(\.\d{1,30})?")
)


@FAST
@given(value=DURATIONS)
def test_any_duration_is_finite_seconds_or_invalid_input(value: Any) -> None:
    try:
        seconds = parse_duration(value, "rewardWaitTime")
    except InvalidInputError:
        return
    assert seconds == seconds and abs(seconds) != float("inf")


CONFIG_KEYS = st.sampled_from(
    [
        "rewardWaitTime",
        "defaultReward",
        "rewardAggregation",
        "explorationPercentage",
        "modelExportFrequency",
        "learningMode",
        "logRetentionDays",
        "other",
    ]
)


@FAST
@given(body=st.dictionaries(CONFIG_KEYS, DURATIONS | JSON, max_size=8))
def test_any_service_configuration_maps_to_settings_or_is_invalid_input(
    body: dict[str, Any],
) -> None:
    """``learningMode: {}`` was a TypeError (a 500): a dict cannot be looked up."""
    try:
        changes = configuration_changes(body)
    except InvalidInputError:
        return
    assert set(changes) <= set(LoopSettings.model_fields)
