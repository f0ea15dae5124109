"""A synthetic news catalogue whose topic lives only in the words of each article.

No article carries a topic field: a loop can only tell politics from sports by reading
the title and body, which is what the feature generator's text embeddings are for. The
vocabulary of each topic is split in two halves: articles "seen" in training use one
half, "new" articles the other, so a policy that does well on new articles has generalised
from meaning, not memorised words or ids (cold start).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

Vocabulary = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
"""Subjects, verbs, objects."""

TOPICS: dict[str, Vocabulary] = {
    "politics": (
        (
            "senator",
            "minister",
            "parliament",
            "governor",
            "president",
            "mayor",
            "congress",
            "party leader",
            "cabinet",
            "ambassador",
        ),
        ("passes", "rejects", "debates", "vetoes", "announces", "proposes", "signs", "blocks"),
        (
            "budget bill",
            "tax reform",
            "election law",
            "trade treaty",
            "immigration policy",
            "healthcare act",
            "voting rights",
            "coalition deal",
            "sanctions package",
            "pension plan",
        ),
    ),
    "sports": (
        (
            "striker",
            "goalkeeper",
            "quarterback",
            "coach",
            "tennis star",
            "sprinter",
            "captain",
            "rookie",
            "midfielder",
            "pitcher",
        ),
        (
            "wins",
            "loses",
            "scores in",
            "clinches",
            "dominates",
            "misses",
            "qualifies for",
            "retires from",
        ),
        (
            "the championship final",
            "the derby",
            "the world cup",
            "the grand slam",
            "the playoffs",
            "the marathon",
            "the league title",
            "the olympic trials",
            "the season opener",
            "the cup semifinal",
        ),
    ),
    "tech": (
        (
            "startup",
            "chipmaker",
            "software giant",
            "smartphone maker",
            "cloud provider",
            "AI lab",
            "robotics firm",
            "cybersecurity team",
            "search engine",
            "app developer",
        ),
        (
            "launches",
            "unveils",
            "patches",
            "open-sources",
            "acquires",
            "recalls",
            "ships",
            "benchmarks",
        ),
        (
            "a new processor",
            "a language model",
            "an encryption tool",
            "a cloud database",
            "a foldable phone",
            "a quantum chip",
            "a browser update",
            "a self-driving system",
            "a data center",
            "an operating system",
        ),
    ),
    "food": (
        (
            "chef",
            "bakery",
            "restaurant",
            "food critic",
            "vineyard",
            "street vendor",
            "pastry cook",
            "farmers market",
            "brewery",
            "cookbook author",
        ),
        ("serves", "perfects", "reinvents", "tastes", "bakes", "grills", "ferments", "plates"),
        (
            "a sourdough loaf",
            "spicy ramen",
            "vegan tacos",
            "a chocolate tart",
            "fresh oysters",
            "a tasting menu",
            "homemade pasta",
            "barbecue ribs",
            "a summer salad",
            "a craft lager",
        ),
    ),
    "travel": (
        (
            "airline",
            "cruise line",
            "backpacker",
            "hotel chain",
            "tour guide",
            "travel blogger",
            "resort",
            "railway",
            "national park",
            "ferry operator",
        ),
        ("opens", "explores", "discovers", "books", "reroutes", "visits", "promotes", "expands"),
        (
            "a beach getaway",
            "mountain trails",
            "a city break",
            "island hopping",
            "a desert safari",
            "a scenic rail journey",
            "ski slopes",
            "a lakeside retreat",
            "a jungle trek",
            "a coastal road trip",
        ),
    ),
}
SEGMENTS: dict[str, str] = {
    "commuter": "politics",
    "fan": "sports",
    "engineer": "tech",
    "foodie": "food",
    "wanderer": "travel",
}
"""Reader segment -> the topic it prefers."""


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    topic: str
    fields: dict[str, Any]


class NewsCatalogue:
    """Articles and readers: a click is likely (``hit``) on the reader's topic, else rare."""

    def __init__(self, seed: int = 0, hit: float = 0.8, miss: float = 0.1) -> None:
        self.rng = random.Random(seed)
        self.hit, self.miss = hit, miss

    def articles(self, half: int, per_topic: int, prefix: str) -> list[Article]:
        """``per_topic`` articles of each topic from vocabulary half 0 ("seen") or 1 ("new")."""
        out: list[Article] = []
        for topic, vocabulary in TOPICS.items():
            subjects, verbs, objects = (_half(words, half) for words in vocabulary)
            for _ in range(per_topic):
                r = self.rng
                title = f"{r.choice(subjects).capitalize()} {r.choice(verbs)} {r.choice(objects)}"
                body = (
                    f"The {r.choice(subjects)} {r.choice(verbs)} {r.choice(objects)}, while the "
                    f"{r.choice(subjects)} {r.choice(verbs)} {r.choice(objects)}."
                )
                out.append(Article(f"{prefix}{len(out)}", topic, {"title": title, "body": body}))
        return out

    def reader(self) -> str:
        return self.rng.choice(list(SEGMENTS))

    def slate(self, articles: list[Article]) -> list[Article]:
        """One article of each topic, in random order."""
        by_topic: dict[str, list[Article]] = {}
        for article in articles:
            by_topic.setdefault(article.topic, []).append(article)
        slate = [self.rng.choice(group) for group in by_topic.values()]
        self.rng.shuffle(slate)
        return slate

    def click(self, segment: str, article: Article) -> float:
        p = self.hit if SEGMENTS[segment] == article.topic else self.miss
        return 1.0 if self.rng.random() < p else 0.0


def _half(words: tuple[str, ...], half: int) -> tuple[str, ...]:
    middle = len(words) // 2
    return words[:middle] if half == 0 else words[middle:]
