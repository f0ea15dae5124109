"""Categories and tags: the value itself as a namespaced feature, rare values bucketed.

Vowpal Wabbit hashes ``field=value`` itself, and the networks hash it with
:class:`~recloop.features.hashing.FeatureHasher`, so no vocabulary is needed to encode a
value. What needs fitting is rarity: a value seen fewer than ``min_count`` times gets one
shared ``__rare__`` bucket, so a long tail of one-off brands learns one weight together
instead of thousands that each see a single example.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

RARE = "__rare__"
MAX_VALUE_CHARS = 200
"""Longer category strings are cut: a category is a name, not a document."""
MAX_VALUES = 20_000
"""Distinct values one field counts. Each new value was a new key for good (and the whole
state is stored again with every item written), so a flood of one-off values grew memory
and every write without bound. Past this, the counts are pruned to the ``MAX_VALUES // 2``
most frequent values seen at least ``min_count`` times: one-off values encode as
``__rare__`` anyway, and a value pruned while frequent counts again from nothing."""


class CategoricalEncoder:
    def __init__(self, min_count: int = 1, counts: Counter[str] | None = None) -> None:
        self.min_count = min_count
        self.counts: Counter[str] = counts if counts is not None else Counter()

    def partial_fit(self, values: Iterable[str]) -> None:
        self.counts.update(values)
        if len(self.counts) > MAX_VALUES:
            frequent = Counter({v: c for v, c in self.counts.items() if c >= self.min_count})
            self.counts = Counter(dict(frequent.most_common(MAX_VALUES // 2)))

    def encode(self, value: str) -> str:
        return value if self.counts[value] >= self.min_count else RARE

    def encode_tags(self, values: Iterable[str]) -> list[str]:
        out: dict[str, None] = {}  # de-duplicated, first-seen order: the same bag every time
        for value in values:
            out[self.encode(value)] = None
        return list(out)

    def describe(self) -> str:
        kept = sum(1 for c in self.counts.values() if c >= self.min_count)
        return (
            f"{len(self.counts)} distinct values, {kept} seen at least {self.min_count} "
            f"times (the rest share {RARE})"
        )

    def state(self) -> dict[str, Any]:
        return {"min_count": self.min_count, "counts": dict(self.counts)}

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> CategoricalEncoder:
        return cls(
            int(raw["min_count"]), Counter({str(k): int(v) for k, v in raw["counts"].items()})
        )


def to_category(value: Any) -> str | None:
    """A category string from a string, int or bool; None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.strip()[:MAX_VALUE_CHARS]
    if isinstance(value, int):
        return str(value)
    return None


def to_tags(value: Any) -> list[str] | None:
    """Tags from a list of strings (or numbers), or a ``|``-separated string (CSV cells)."""
    if isinstance(value, str):
        items: list[Any] = [part for part in value.split("|") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    out: list[str] = []
    for item in items:
        tag = to_category(item)
        if tag is None:
            return None
        out.append(tag)
    return out
