"""Cold start: text features carry what a loop learned to articles it never saw.

The reward depends on an article's topic, which only its title and body express (no topic
field), and new articles use words no training article used. A loop featurizing the text
picks the reader's topic for new articles; the same loop with ids alone cannot beat random
on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.simulators.news import SEGMENTS, Article, NewsCatalogue

TRAIN_EVENTS = 3000
EVAL_DECISIONS = 300


def _train_and_test(tmp_path: Path, text: bool, **extra: Any) -> tuple[float, float]:
    """Share of greedy picks on the reader's topic: (seen articles, new articles)."""
    clock = FakeClock()
    news = NewsCatalogue(seed=3)
    seen, new = news.articles(0, 60, "seen-"), news.articles(1, 60, "new-")
    settings: dict[str, Any] = {
        "exp_unit_seconds": 1.0,
        "checkpoint_every_examples": 200,
        "features": {"fields": {"title": "text", "body": "text"}} if text else {"catalogue": "off"},
    }
    with Loop.open(tmp_path, start=False, clock=clock, seed=1, **settings) as loop:
        if text:
            loop.put_items([(a.id, a.fields) for a in seen])  # fits PCA and topics on these

        def action(article: Article, raw: bool) -> Any:
            return {"id": article.id, "fields": article.fields} if raw else article.id

        for i in range(TRAIN_EVENTS):
            reader = news.reader()
            slate = news.slate(seen)
            # fixed event ids: exploration samples from them, so training repeats exactly
            d = loop.rank({"reader": reader}, [action(a, False) for a in slate], f"train-{i}")
            chosen = next(a for a in slate if a.id == d.chosen)
            loop.reward(d.event_id, news.click(reader, chosen))
            if i % 100 == 99:
                clock.advance(1.5)
                loop.step()
        clock.advance(1.5)
        loop.step()
        loop.reconfigure(explorer="greedy")

        def accuracy(articles: list[Article], raw: bool) -> float:
            hits = 0
            for _ in range(EVAL_DECISIONS):
                reader = news.reader()
                slate = news.slate(articles)
                d = loop.rank({"reader": reader}, [action(a, raw and text) for a in slate])
                hits += next(a for a in slate if a.id == d.chosen).topic == SEGMENTS[reader]
            return hits / EVAL_DECISIONS

        return accuracy(seen, False), accuracy(new, True)


@pytest.mark.parametrize("learner", ["vw", "drn"])
def test_text_features_pick_the_readers_topic_for_never_seen_articles(
    tmp_path: Path, one_thread: None, learner: str
) -> None:
    """Both the bandit (VW) and the deep RL agent (DRN, hashing the same features into its
    networks' inputs) learn from the generated features."""
    on_seen, on_new = _train_and_test(tmp_path / "text", text=True, learner=learner)
    assert on_seen >= 0.9, on_seen
    assert on_new >= 0.9, on_new


def test_id_only_features_do_not_beat_random_on_new_articles(tmp_path: Path) -> None:
    on_seen, on_new = _train_and_test(tmp_path / "ids", text=False)
    assert on_seen >= 0.4, on_seen  # ids alone learn something of the articles seen...
    assert on_new <= 0.3, on_new  # ...but new ids are all alike: random is 1 in 5
