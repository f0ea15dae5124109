"""Each transformer of the feature generator: determinism, incremental fitting, stability
across processes, and the errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from recloop.core.errors import InvalidInputError
from recloop.features.categorical import RARE, CategoricalEncoder, to_tags
from recloop.features.generator import FeatureGenerator
from recloop.features.item_identity import content_hash
from recloop.features.numeric import NumericEncoder, QuantileSketch
from recloop.features.spec import infer_kind, parse_timestamp
from recloop.features.text import MAX_TEXT_CHARS, MiniLMEmbedder, TextEncoder, clean_text
from recloop.features.timestamp import age_bucket, cyclical
from recloop.settings import FeatureSettings, LoopSettings

# -- spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "values", "kind"),
    [
        ("item_id", ["a1", "b2"], "id"),
        ("price", [1.5, 20, 3], "numeric"),
        ("published_at", [1_764_000_000, 1_765_000_000], "timestamp"),
        ("published", ["2026-11-30T10:00:00Z", "2026-12-01"], "timestamp"),
        ("title", ["Senate passes the budget bill", "Striker scores in the derby final"], "text"),
        ("brand", ["acme", "globex", "acme"], "categorical"),
        ("tags", [["a", "b"], ["c"]], "tags"),
        ("tags", [["a", "b"], "c|d"], "tags"),
        ("on_sale", [True, False], "categorical"),
    ],
)
def test_kinds_are_inferred_from_values_with_a_reason(
    name: str, values: list[Any], kind: str
) -> None:
    inferred, reason = infer_kind(name, values)
    assert inferred == kind
    assert reason


def test_an_unknown_kind_in_the_spec_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="'title' has unknown kind 'prose'"):
        LoopSettings(features={"fields": {"title": "prose"}})


def test_timestamps_parse_from_iso_strings_and_epoch_seconds_or_milliseconds() -> None:
    assert parse_timestamp("2026-12-01T00:00:00Z") == 1_796_083_200.0
    assert parse_timestamp("2026-12-01T00:00:00") == 1_796_083_200.0  # naive = UTC
    assert parse_timestamp(1_796_083_200_000) == 1_796_083_200.0
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(float("nan")) is None


# -- numeric ---------------------------------------------------------------------------------


def test_quantile_sketch_is_exact_when_small_and_close_when_compacted() -> None:
    small = QuantileSketch(capacity=64)
    small.update(range(1, 11))
    assert small.quantiles(np.array([0.5]))[0] == 5
    big = QuantileSketch(capacity=1024)
    values = np.random.default_rng(0).normal(size=20_000)
    for chunk in np.array_split(values, 50):
        big.update(chunk)
    qs = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    assert big.values.size <= 1024 and big.count == 20_000
    ranks = np.searchsorted(np.sort(values), big.quantiles(qs)) / values.size
    assert np.abs(ranks - qs).max() < 0.02  # rank error: 2 in 100


def test_quantile_sketch_is_deterministic_and_round_trips() -> None:
    values = np.random.default_rng(1).exponential(size=5000)
    a, b = QuantileSketch(128), QuantileSketch(128)
    for chunk in np.array_split(values, 7):
        a.update(chunk)
        b.update(chunk)
    restored = QuantileSketch.from_state(json.loads(json.dumps(a.state())))
    qs = np.linspace(0, 1, 11)
    assert (a.quantiles(qs) == b.quantiles(qs)).all()
    assert (a.quantiles(qs) == restored.quantiles(qs)).all()


def test_numeric_encoder_scales_robustly_and_bins_by_quantile() -> None:
    enc = NumericEncoder(bins=4)
    enc.partial_fit([1, 2, 3, 4, 5, 6, 7, 8, 1_000_000])  # one absurd outlier
    low, mid, outlier = enc.encode(1), enc.encode(5), enc.encode(1_000_000)
    assert mid["z"] == 0.0  # the median
    assert low["z"] < 0 < outlier["z"] <= 5.0  # clipped, and the outlier did not set the scale
    assert low["bin"] == "q0" and outlier["bin"] == "q3"


def test_numeric_encoder_fits_incrementally_like_all_at_once() -> None:
    values = list(range(100))
    whole, pieces = NumericEncoder(), NumericEncoder()
    whole.partial_fit(values)
    for start in range(0, 100, 10):
        pieces.partial_fit(values[start : start + 10])
    assert [whole.encode(v) for v in (0, 33, 99)] == [pieces.encode(v) for v in (0, 33, 99)]


# -- categorical / tags ------------------------------------------------------------------------


def test_rare_categories_share_one_bucket_until_seen_often_enough() -> None:
    enc = CategoricalEncoder(min_count=2)
    enc.partial_fit(["acme", "acme", "globex"])
    assert enc.encode("acme") == "acme"
    assert enc.encode("globex") == RARE
    enc.partial_fit(["globex"])  # incremental: now seen twice
    assert enc.encode("globex") == "globex"
    assert enc.encode_tags(["acme", "initech", "acme", "umbrella"]) == ["acme", RARE]
    assert to_tags("a|b||c") == ["a", "b", "c"]


# -- timestamps --------------------------------------------------------------------------------


def test_time_of_day_is_cyclical_and_age_is_bucketed_by_powers_of_two() -> None:
    late, early = cyclical(1_796_083_200 - 1800), cyclical(1_796_083_200 + 1800)  # 23:30, 00:30
    assert abs(late["hour_cos"] - early["hour_cos"]) < 1e-3  # an hour apart, not 23 hours
    assert late["hour_sin"] == -early["hour_sin"]
    assert age_bucket(0, 0) == "a0"
    assert age_bucket(0, 3 * 3600) == "a2"
    assert age_bucket(0, 24 * 3600) == "a4"
    assert age_bucket(10, 0) == "a-1"


# -- text ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


TEXTS = [
    "Senate passes the budget bill after a long debate",
    "Minister announces a new tax reform",
    "Striker scores twice as the team wins the derby",
    "Goalkeeper saves a penalty in the cup final",
    "Chef bakes a sourdough loaf with wild yeast",
    "Bakery serves a chocolate tart and fresh pastries",
] * 4


def test_embeddings_are_real_sentence_embeddings(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(
        ["Parliament votes on the budget", "Senate passes a tax bill", "A striker scores a goal"]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    politics, politics2, sports = vectors
    assert politics @ politics2 > politics @ sports + 0.1  # meaning, not words, is close


def test_text_encoder_reduces_clusters_and_is_deterministic(embedder: MiniLMEmbedder) -> None:
    a = TextEncoder(embedder, dim=4, topics=3, keywords=2, seed=0)
    b = TextEncoder(embedder, dim=4, topics=3, keywords=2, seed=0)
    out_a, out_b = a.encode_many(TEXTS), b.encode_many(TEXTS)
    assert out_a == out_b
    assert set(out_a[0]) == {"e0", "e1", "e2", "e3", "topic", "kw"}
    topics = [row["topic"] for row in out_a[:6]]
    assert topics[0] == topics[1] and topics[2] == topics[3] and topics[4] == topics[5]
    assert len({topics[0], topics[2], topics[4]}) == 3  # three subjects, three topics
    restored = TextEncoder.from_state(json.loads(json.dumps(a.state())), embedder)
    assert restored.encode_many(TEXTS[:3]) == out_a[:3]
    assert "PCA" in a.describe()


def test_the_text_reduction_is_frozen_after_the_first_fit(embedder: MiniLMEmbedder) -> None:
    enc = TextEncoder(embedder, dim=4, topics=2)
    first = enc.encode_many(TEXTS)
    enc.encode_many(["Completely different words about volcanoes and lava"] * 10)
    assert enc.encode_many(TEXTS[:2]) == first[:2]


def test_random_projection_needs_no_fit_and_empty_or_huge_texts_are_handled(
    embedder: MiniLMEmbedder,
) -> None:
    enc = TextEncoder(embedder, dim=8, reduction="random", topics=0)
    [single] = enc.encode_many(["just one text"])
    assert len(single) == 8 and "random" in enc.describe()
    empty, huge = enc.encode_many(["   ", "word " * 100_000])
    assert empty == {"empty": True}
    assert len(huge) == 8
    assert len(clean_text("word " * 100_000)) <= MAX_TEXT_CHARS


# -- the generator ---------------------------------------------------------------------------


def _items() -> list[dict[str, Any]]:
    return [
        {
            "id": f"i{i}",
            "title": TEXTS[i % len(TEXTS)],
            "price": float(i),
            "tags": ["news", "daily"] if i % 2 else ["news"],
            "brand": "acme" if i % 3 else f"brand{i}",
            "published_at": "2026-11-30T10:00:00Z",
        }
        for i in range(24)
    ]


def test_generator_featurizes_each_kind_under_its_field(embedder: MiniLMEmbedder) -> None:
    gen = FeatureGenerator(FeatureSettings(text_dim=4, text_topics=3), embedder)
    [first, second] = gen.featurize(_items())[:2]
    assert "id" not in first.features  # the id is not a feature
    assert set(first.features["title"]) == {"e0", "e1", "e2", "e3", "topic"}
    assert set(first.features["price"]) == {"z", "bin"}
    assert second.features["tags"] == ["news", "daily"]
    assert first.features["brand"] == RARE and second.features["brand"] == "acme"
    assert first.times == (("published_at", 1_796_032_800.0),)
    assert first.at(1_796_032_800.0 + 3600)["published_at"]["age"] == "a1"
    kinds = {row["field"]: row["kind"] for row in gen.explain()}
    assert kinds == {
        "id": "id",
        "title": "text",
        "price": "numeric",
        "tags": "tags",
        "brand": "categorical",
        "published_at": "timestamp",
    }


def test_a_value_contradicting_its_kind_is_refused_and_fits_nothing(
    embedder: MiniLMEmbedder,
) -> None:
    gen = FeatureGenerator(FeatureSettings(fields={"price": "numeric"}, text_dim=4), embedder)
    gen.featurize(_items())
    before = json.dumps(gen.state(), sort_keys=True)
    with pytest.raises(InvalidInputError, match=r"field 'price' is numeric .* item 1 has 'cheap'"):
        gen.featurize([{"price": 3.0}, {"price": "cheap"}])
    with pytest.raises(InvalidInputError, match=r"is numeric .* has nan"):
        gen.featurize([{"price": float("nan")}])
    with pytest.raises(InvalidInputError, match="raw fields are flat"):
        gen.featurize([{"price": {"amount": 3}}])
    assert json.dumps(gen.state(), sort_keys=True) == before


def test_the_generator_state_round_trips(embedder: MiniLMEmbedder) -> None:
    settings = FeatureSettings(text_dim=4, text_topics=3)
    gen = FeatureGenerator(settings, embedder)
    gen.featurize(_items())
    again = FeatureGenerator(settings, embedder)
    again.load_state(json.loads(json.dumps(gen.state())))
    probe = _items()[5:8]
    assert [f.features for f in again.featurize(probe, fit=False)] == [
        f.features for f in gen.featurize(probe, fit=False)
    ]


HASH_SCRIPT = """
import json, sys
from recloop.features.item_identity import content_hash
from recloop.features.hashing import FeatureHasher
from recloop.features.numeric import NumericEncoder
enc = NumericEncoder()
enc.partial_fit(range(100))
print(json.dumps({
    "hash": content_hash({"b": [1, 2], "a": "x"}),
    "slots": FeatureHasher(64).vector({"brand": "acme", "title": {"topic": "t3"}}).tolist(),
    "numeric": enc.encode(42.0),
}))
"""


def test_hashes_and_fitted_features_are_the_same_in_another_process() -> None:
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", HASH_SCRIPT],
                capture_output=True,
                text=True,
                check=True,
                env={"PYTHONHASHSEED": seed},
            ).stdout
        )
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert runs[0]["hash"] == content_hash({"a": "x", "b": [1, 2]})  # key order: no matter
