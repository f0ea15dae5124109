"""A loop's item catalogue as its callers use it: raw fields in, features computed once
per content, and a clear error in a pipeline process, which does not open it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recloop.core.errors import InvalidInputError
from recloop.core.stats import LoopStats
from recloop.core.types import ItemRecord
from recloop.features.catalogue import ItemCatalogue, PutResult


class LoopItems:
    def __init__(self, catalogue: ItemCatalogue | None, stats: LoopStats) -> None:
        self.catalogue = catalogue
        self.stats = stats

    def _open(self) -> ItemCatalogue:
        if self.catalogue is None:
            raise InvalidInputError("the item catalogue is not open in a pipeline process")
        return self.catalogue

    def put(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[PutResult]:
        """In one transaction (the first batch a catalogue sees also fits the text
        reduction and topics)."""
        try:
            return self._open().put(items)
        except InvalidInputError:
            self.stats.inc("rejected_total:invalid-item")
            raise

    def get(self, item_id: str) -> ItemRecord | None:
        return self._open().get(item_id)

    def delete(self, item_id: str) -> bool:
        return self._open().delete(item_id)

    def page(self, after: str = "", limit: int = 100) -> list[ItemRecord]:
        """In id order, after ``after`` (paging)."""
        return self._open().store.items(after, max(1, min(limit, 1000)))

    def refit(self, fit_sample: int = 20_000) -> int:
        """Fit the feature generator again on the whole catalogue and recompute every
        item's features (see :meth:`ItemCatalogue.refit`)."""
        return self._open().refit(fit_sample)

    def explain(self) -> list[dict[str, str]]:
        """Each raw field's kind, whether the spec named it or it was inferred (and why),
        and what its encoder has fitted."""
        return self._open().explain()
