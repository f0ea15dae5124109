"""The item catalogue in a loop: cached features, rank calls by id or raw fields, the log
and the export carrying exactly what the policy saw, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError, UnknownItemError
from recloop.core.types import Action, GeneratedFeatures
from recloop.features import text as text_module
from recloop.features.vw_text import VWText, action_line
from recloop.log.dsjson import to_dsjson
from recloop.streaming.policies import stream_policy

ITEMS = [
    ("a1", {"title": "Senate passes the budget bill", "price": 3.0, "tags": ["politics"]}),
    ("a2", {"title": "Striker scores twice in the derby", "price": 1.0, "tags": ["sports"]}),
    ("a3", {"title": "Chef bakes a sourdough loaf", "price": 2.0, "tags": ["food"]}),
    ("a4", {"title": "Minister signs the trade treaty", "price": 5.0, "tags": ["politics"]}),
]
FEATURES = {"fields": {"title": "text"}, "text_dim": 2, "text_topics": 2, "rare_min_count": 1}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_796_083_200.0)


@pytest.fixture
def loop(tmp_path: Path, clock: FakeClock) -> Any:
    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, features=FEATURES
    ) as lp:
        yield lp


def test_put_computes_features_once_per_content(loop: Loop) -> None:
    first = loop.put_items(ITEMS)
    assert all(r.changed for r in first)
    assert set(first[0].features) == {"title", "price", "tags"}
    again = loop.put_items(ITEMS)
    assert not any(r.changed for r in again)  # same content: nothing recomputed
    assert [r.features for r in again] == [r.features for r in first]
    changed = loop.put_item("a1", {**ITEMS[0][1], "price": 4.0})
    assert changed.changed and changed.content_hash != first[0].content_hash
    record = loop.get_item("a1")
    assert record is not None and record.fields["price"] == 4.0
    assert loop.stats.get("items_featurized_total") == 5


def test_rank_by_id_uses_catalogue_features_and_logs_them(loop: Loop, clock: FakeClock) -> None:
    loop.put_items(ITEMS)
    d = loop.rank({"user": "adult"}, ["a1", "a2", {"id": "a3"}])
    stored = {item_id: loop.get_item(item_id) for item_id in ("a1", "a2", "a3")}
    assert [a.features for a in d.actions] == [stored[a.id].features for a in d.actions]  # type: ignore[union-attr]
    loop.reward(d.event_id, 1.0)
    clock.advance(2.0)
    loop.step()
    [example] = list(loop.joined.iter_all())
    assert example.decision.actions == d.actions  # the log holds what the policy saw
    keys = [getattr(a.features, "key", None) for a in example.decision.actions]
    assert keys == [a.features.key for a in d.actions] and all(keys)  # type: ignore[attr-defined]
    line = to_dsjson(example)
    multi = line["c"]["_multi"]
    assert multi[0]["A"] == {"id=a1": 1, "tags=politics": 1}
    assert multi[0]["Atitle"]["e0"] == d.actions[0].features["title"]["e0"]  # a namespace
    assert multi[0]["Aprice"]["bin=" + d.actions[0].features["price"]["bin"]] == 1


def test_rank_with_raw_fields_featurizes_and_caches_the_item(loop: Loop) -> None:
    loop.put_items(ITEMS)
    raw = {"id": "new", "fields": {"title": "Governor vetoes the tax bill", "price": 2.5}}
    d = loop.rank({}, [raw, "a2"])
    assert loop.get_item("new") is not None
    assert d.actions[0].features == loop.get_item("new").features  # type: ignore[union-attr]
    before = loop.stats.get("items_featurized_total")
    loop.rank({}, [raw, "a2"])  # same content: a lookup, no featurizing
    assert loop.stats.get("items_featurized_total") == before
    mixed = loop.rank({}, [{**raw, "features": {"fresh": 1}}, "a2"])
    assert mixed.actions[0].features["fresh"] == 1 and "title" in mixed.actions[0].features
    with pytest.raises(InvalidInputError, match="both given and generated"):
        loop.rank({}, [{**raw, "features": {"price": 1}}, "a2"])


def test_a_rank_with_fields_does_not_change_how_bare_ids_are_treated(loop: Loop) -> None:
    """The issue's case: one rank carrying ``fields`` put an item in the catalogue, and
    every later bare-id rank (of every client) became a 422 unknown-item."""
    assert loop.rank({}, ["x", "y"]).chosen in {"x", "y"}
    loop.rank({}, [{"id": "n1", "fields": {"title": "Budget vote today"}}, "x"])
    later = loop.rank({}, ["x", "y"])
    assert later.chosen in {"x", "y"} and later.actions[0].features == {}
    assert loop.stats.get("catalogue_misses_total") == 3  # x beside n1, then x and y
    assert loop.stats.get("rejected_total:unknown-item") == 0
    assert loop.rank({}, ["n1", "x"]).actions[0].features  # known ids get their features


def test_unknown_item_ids_are_refused_naming_them(tmp_path: Path, clock: FakeClock) -> None:
    strict = {**FEATURES, "catalogue": "required"}
    with Loop.open(tmp_path, start=False, clock=clock, features=strict) as loop:
        _refuses_unknown_ids(loop)


def _refuses_unknown_ids(loop: Loop) -> None:
    with pytest.raises(UnknownItemError, match="'x'"):
        loop.rank({}, ["x", "y"])  # required: even with an empty catalogue
    loop.put_items(ITEMS)
    with pytest.raises(UnknownItemError, match="'nope'"):
        loop.rank({}, ["a1", "nope"])
    assert loop.stats.get("rejected_total:unknown-item") == 2
    with pytest.raises(InvalidInputError, match=r"actions\[1\]: field 'price' is numeric"):
        loop.rank({}, ["a1", {"id": "b", "fields": {"title": "x", "price": "cheap"}}])
    assert loop.get_item("b") is None  # nothing half-written
    with pytest.raises(InvalidInputError, match="appears twice"):
        loop.put_items([ITEMS[0], ITEMS[0]])


def test_timestamp_fields_age_at_decision_time(loop: Loop, clock: FakeClock) -> None:
    loop.put_item("t", {"title": "Old news", "published_at": clock.now() - 3600})
    assert loop.rank({}, ["t"]).actions[0].features["published_at"]["age"] == "a1"
    clock.advance(7 * 24 * 3600)
    assert loop.rank({}, ["t"]).actions[0].features["published_at"]["age"] == "a7"


def test_another_process_sees_updates_through_the_change_feed(
    tmp_path: Path, clock: FakeClock
) -> None:
    with (
        Loop.open(
            tmp_path, start=False, clock=clock, features={**FEATURES, "catalogue": "required"}
        ) as writer,
        Loop(writer.settings, tmp_path, clock=clock, role="serve") as server,
    ):
        writer.put_items(ITEMS)
        old = server.rank({}, ["a1", "a2"]).actions[0].features
        writer.put_item("a1", {**ITEMS[0][1], "title": "Striker misses the cup final"})
        server.step()  # a tick: the change feed drops the stale copy
        new = server.rank({}, ["a1", "a2"]).actions[0].features
        assert new == writer.get_item("a1").features != old  # type: ignore[union-attr]
        assert writer.delete_item("a2")
        server.step()
        with pytest.raises(UnknownItemError):
            server.rank({}, ["a1", "a2"])


def _break_the_embedding_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, texts: object) -> object:
        raise RuntimeError("the embedding model is gone")

    monkeypatch.setattr(text_module.MiniLMEmbedder, "embed", broken)


def test_a_featurization_failure_does_not_lose_the_decision(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop.put_items(ITEMS)
    _break_the_embedding_model(monkeypatch)
    d = loop.rank({}, [{"id": "z", "fields": {"title": "Brand new text"}}, "a1"])
    assert d.event_id and loop.stats.get("featurization_errors_total") == 1
    assert d.actions[0].features == {}  # decided without them, and logged as such
    logged = loop.log.get_decision(d.event_id)
    assert logged is not None and logged.actions[0].features == {}


def test_vw_text_of_catalogue_items_is_cached_by_content_key_and_follows_updates() -> None:
    text = VWText()
    first = Action("x", GeneratedFeatures({"title": {"e0": 0.5, "topic": "t1"}}, key="h1/"))
    assert text.action_line(first) == action_line(first)
    assert text.action_line(first) is text.action_line(first)  # cached
    updated = Action("x", GeneratedFeatures({"title": {"e0": -0.5, "topic": "t2"}}, key="h2/"))
    assert text.action_line(updated) == action_line(updated) != action_line(first)
    unkeyed = Action("x", GeneratedFeatures({"title": {"e0": 0.1}}))
    assert text.action_line(unkeyed) == action_line(unkeyed)  # no key: built each time


def test_items_out_of_the_hot_set_are_decoded_again_with_the_same_features(
    tmp_path: Path, clock: FakeClock
) -> None:
    with Loop.open(tmp_path, start=False, clock=clock, features={**FEATURES, "hot_items": 2}) as lp:
        lp.put_items(ITEMS)
        first = [lp.rank({}, [i]).actions[0].features for i in ("a1", "a2", "a3", "a4")]
        again = [lp.rank({}, [i]).actions[0].features for i in ("a1", "a2", "a3", "a4")]
        assert first == again
        assert first == [lp.get_item(i).features for i in ("a1", "a2", "a3", "a4")]  # type: ignore[union-attr]
        assert [f.key for f in first] == [f.key for f in again]  # the VW text cache still hits


def test_aged_features_stay_the_same_object_while_the_bucket_holds(
    loop: Loop, clock: FakeClock
) -> None:
    loop.put_item("t", {"title": "Old news", "published_at": clock.now() - 3600})
    one = loop.rank({}, ["t"]).actions[0].features
    clock.advance(60)
    assert loop.rank({}, ["t"]).actions[0].features is one  # the VW text cache hits
    clock.advance(3 * 3600)
    assert loop.rank({}, ["t"]).actions[0].features is not one


def test_the_stream_scores_candidates_with_the_loops_catalogue_features(
    tmp_path: Path, clock: FakeClock
) -> None:
    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, features=FEATURES
    ) as lp:
        lp.put_items(ITEMS)
        for _ in range(200):
            d = lp.rank({"user": "adult"}, ["a1", "a2", "a3", "a4"])
            lp.reward(d.event_id, float(d.chosen in ("a1", "a4")))  # politics
        clock.advance(2.0)
        lp.step()
        assert lp.model_version != "0"
        ids = ["a1", "a2", "a3", "a4"]
        expected = lp.served.slot.current.policy.scores({"user": "adult"}, lp.rank({}, ids).actions)
        policy = stream_policy("loop:default", tmp_path)
        assert policy is not None
        scores = policy.scores({"user": "adult", "now": clock.now()}, [Action(i) for i in ids])
        assert list(scores) == pytest.approx(list(expected))
        assert len(set(np.round(scores, 6))) > 1  # features, not ids the model never saw


def test_new_raw_field_actions_of_one_rank_are_embedded_in_one_batch(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop.put_items(ITEMS)
    calls: list[int] = []
    embed = text_module.MiniLMEmbedder.embed

    def counting(self: text_module.MiniLMEmbedder, texts: Any) -> Any:
        calls.append(len(texts))
        return embed(self, texts)

    monkeypatch.setattr(text_module.MiniLMEmbedder, "embed", counting)
    fresh = [
        {"id": f"n{i}", "fields": {"title": title, "price": 1.0}}
        for i, title in enumerate(["Governor vetoes the bill", "Chef grills ribs", "Rookie scores"])
    ]
    d = loop.rank({}, [*fresh, "a1"])
    assert calls == [3]  # one embedding call for the three new items
    assert [a.features == loop.get_item(a.id).features for a in d.actions[:3]] == [True] * 3  # type: ignore[union-attr]
    loop.rank({}, [*fresh, "a1"])
    assert calls == [3]  # cached now


def test_a_failed_batch_of_new_items_does_not_lose_the_decision(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop.put_items(ITEMS)
    _break_the_embedding_model(monkeypatch)
    raw = [{"id": f"z{i}", "fields": {"title": f"Brand new text {i}"}} for i in range(2)]
    d = loop.rank({}, [*raw, "a1"])
    assert loop.stats.get("featurization_errors_total") == 2
    assert [a.features for a in d.actions[:2]] == [{}, {}]
    assert loop.log.get_decision(d.event_id) is not None
