"""The feature generator: featurization cost uncached and cached, text embedding throughput,
rank latency with catalogue actions vs the same features sent ready-made, and memory.

Items are news articles (title, body, price, tags, published_at). Goals (issue 10): a cached
lookup <= 20 us per item; rank p99 with all actions named by id (in cache) within 1.2x of
the same actions sent pre-featurized, in the same run.
"""

from __future__ import annotations

import gc
import random
import tempfile
import time
import tracemalloc
from typing import Any

from benchmarks.common import cli, figure, ns_to_ms, print_table, sample_ns, summarize
from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.types import ItemRecord
from recloop.features.text import MiniLMEmbedder
from recloop.simulators.news import NewsCatalogue

BENCH = "features"
GOAL_CACHED_US = 20.0
GOAL_RANK_RATIO = 1.2
SPEC = {"fields": {"title": "text", "body": "text"}}


def _items(news: NewsCatalogue, n: int, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(len(prefix) + n)
    per_topic = max(1, n // 5)
    out = []
    for article in news.articles(rng.randint(0, 1), per_topic, prefix)[:n]:
        fields = {
            **article.fields,
            "price": round(rng.uniform(0, 20), 2),
            "tags": rng.sample(["daily", "breaking", "opinion", "local", "world"], 2),
            "published_at": 1_796_000_000 + rng.randint(0, 86_400 * 30),
        }
        out.append((article.id, fields))
    return out


def main(quick: bool = False) -> list[dict[str, Any]]:
    n_catalogue = 200 if quick else 1000
    n_uncached = 30 if quick else 150
    n_rank = 2000 if quick else 10_000
    n_memory = 10_000 if quick else 100_000
    rows: list[dict[str, Any]] = []
    news = NewsCatalogue(seed=0)
    clock = FakeClock(1_798_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        loop = Loop.open(tmp, start=False, clock=clock, exp_unit_seconds=1.0, features=SPEC)
        try:
            catalogue = _items(news, n_catalogue, "c")
            MiniLMEmbedder().embed(["load the model before the clock starts"])
            start = time.perf_counter()
            loop.put_items(catalogue)  # the first batch: embeds and fits PCA + topics
            batch_s = time.perf_counter() - start
            rows.append(
                figure(
                    BENCH,
                    "bulk_import_items_per_s",
                    n_catalogue / batch_s,
                    None,
                    n_catalogue,
                    note="first batch: embedding + PCA/topic fit + SQLite",
                )
            )

            fresh = _items(news, n_uncached, "u")
            uncached = summarize(
                ns_to_ms(sample_ns(lambda i: loop.put_item(*fresh[i]), n_uncached))
            )
            rows.append(
                figure(
                    BENCH,
                    "uncached_item_p50_ms",
                    uncached["p50"],
                    None,
                    n_uncached,
                    note="one new item: 2 texts embedded, features stored",
                )
            )
            rows.append(figure(BENCH, "uncached_item_p99_ms", uncached["p99"], None, n_uncached))

            embedder = MiniLMEmbedder()
            texts = [f["title"] + ". " + f["body"] for _, f in catalogue]
            start = time.perf_counter()
            embedder.embed(texts)
            rows.append(
                figure(
                    BENCH,
                    "text_embedding_items_per_s",
                    len(texts) / (time.perf_counter() - start),
                    None,
                    len(texts),
                    note="MiniLM-L6 on the CPU, batches of 64",
                )
            )

            items = loop.items
            assert items is not None
            ids = [item_id for item_id, _ in catalogue]
            now = clock.now()
            items.actions(ids, now)  # into memory
            per_item = summarize(
                ns_to_ms(sample_ns(lambda i: items.actions([ids[i % len(ids)]], now), n_rank, 500))
            )
            rows.append(
                figure(
                    BENCH, "cached_lookup_p50_us", per_item["p50"] * 1000, GOAL_CACHED_US, n_rank
                )
            )
            rows.append(figure(BENCH, "cached_lookup_p99_us", per_item["p99"] * 1000, None, n_rank))
            hot = items.settings
            items.settings = hot.model_copy(update={"hot_items": 1})  # every lookup decodes
            items._hot.clear()
            decoded = summarize(
                ns_to_ms(sample_ns(lambda i: items.actions([ids[i % len(ids)]], now), n_rank, 500))
            )
            items.settings = hot
            rows.append(
                figure(
                    BENCH,
                    "cached_not_hot_lookup_p50_us",
                    decoded["p50"] * 1000,
                    GOAL_CACHED_US,
                    n_rank,
                    note="in memory as JSON, decoded on use",
                )
            )
            rows.append(
                figure(BENCH, "cached_not_hot_lookup_p99_us", decoded["p99"] * 1000, None, n_rank)
            )

            rows += _rank_ratio(loop, clock, news, ids, n_rank)
        finally:
            loop.close()
        rows += _memory(tmp, n_memory)
    print_table("feature generator", rows)
    return rows


def _rank_ratio(
    loop: Loop, clock: FakeClock, news: NewsCatalogue, ids: list[str], n: int
) -> list[dict[str, Any]]:
    """Rank p50/p99 with 10 actions by id (catalogue, in memory) vs the same features sent
    ready-made; interleaved, so both see the same machine."""
    rng = random.Random(1)
    slates = [rng.sample(ids, 10) for _ in range(200)]
    for i in range(500):  # a model first, so VW does its real work
        d = loop.rank({"reader": news.reader()}, slates[i % len(slates)])
        loop.reward(d.event_id, float(i % 3 == 0))
    clock.advance(2.0)
    loop.step()
    assert loop.model_version != "0"
    ready = [
        [{"id": item_id, "features": dict(loop.get_item(item_id).features)} for item_id in slate]  # type: ignore[union-attr]
        for slate in slates
    ]
    readers = [news.reader() for _ in range(len(slates))]
    by_id: list[int] = []
    featurized: list[int] = []
    for i in range(n):
        k = i % len(slates)
        for sink, actions in ((by_id, slates[k]), (featurized, ready[k])):
            start = time.perf_counter_ns()
            loop.rank({"reader": readers[k]}, actions)
            sink.append(time.perf_counter_ns() - start)
    ids_ms, ready_ms = summarize(ns_to_ms(by_id)), summarize(ns_to_ms(featurized))
    return [
        figure(BENCH, "rank_by_id_p50_ms", ids_ms["p50"], None, n, actions=10),
        figure(BENCH, "rank_by_id_p99_ms", ids_ms["p99"], None, n),
        figure(BENCH, "rank_prefeaturized_p50_ms", ready_ms["p50"], None, n),
        figure(BENCH, "rank_prefeaturized_p99_ms", ready_ms["p99"], None, n),
        figure(
            BENCH,
            "rank_p99_ratio_by_id_to_prefeaturized",
            ids_ms["p99"] / ready_ms["p99"],
            GOAL_RANK_RATIO,
            n,
            better="lower",
        ),
    ]


def _memory(tmp: str, n: int) -> list[dict[str, Any]]:
    """Python heap held by ``n`` cached items (features as a 2-text article has them),
    scaled to 100k."""
    with Loop.open(f"{tmp}/mem", start=False, features=SPEC) as loop:
        items = loop.items
        assert items is not None
        rng = random.Random(2)

        def features() -> dict[str, Any]:
            text = {f"e{j}": round(rng.uniform(-1, 1), 4) for j in range(16)}
            return {
                "title": {**text, "topic": f"t{rng.randrange(8)}"},
                "body": {**text, "topic": f"t{rng.randrange(8)}"},
                "price": {"z": round(rng.uniform(-2, 2), 4), "bin": f"q{rng.randrange(10)}"},
                "tags": ["daily", "world"],
                "published_at": {
                    "hour_sin": 0.5,
                    "hour_cos": 0.866,
                    "dow_sin": 0.0,
                    "dow_cos": 1.0,
                },
            }

        with items.store.writing() as writer:
            writer.put(
                [
                    ItemRecord(f"m{i}", f"h{i}", {}, features(), (("published_at", 1.8e9),))
                    for i in range(n)
                ]
            )
        items.refresh()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            items.actions([f"m{i}"], 1.8e9)
        gc.collect()
        catalogue_held = tracemalloc.get_traced_memory()[0] - before
        for i in range(n):
            loop.served._text.action_line(items.actions([f"m{i}"], 1.8e9)[0])
        gc.collect()
        total_held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        hot = loop.settings.features.hot_items
    scale = 100_000 / n / 2**20
    return [
        figure(
            BENCH,
            "memory_per_100k_cached_items_mb",
            catalogue_held * scale,
            None,
            n,
            note=f"catalogue: compact JSON per item + {min(hot, n)} decoded (tracemalloc)",
        ),
        figure(
            BENCH,
            "memory_per_100k_items_with_vw_text_mb",
            total_held * scale,
            None,
            n,
            note="plus each item's cached VW action line",
        ),
    ]


if __name__ == "__main__":
    cli(main, __doc__ or BENCH)
