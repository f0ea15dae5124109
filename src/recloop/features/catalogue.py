"""The item catalogue of a loop: raw fields in, features cached per item content.

Features are computed once per item content (a hash of its raw fields) and stored with the
item, so a rank call that names known items pays a dictionary lookup. Each process keeps
the items it has used in memory and follows the store's change feed (:meth:`refresh`) so
an item updated through another process (``PUT /v1/items``, ``recloop items import``) is
never served with stale features for more than a tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from recloop.core.errors import InvalidInputError, UnknownItemError
from recloop.core.protocols import ItemStore
from recloop.core.stats import LoopStats
from recloop.core.types import Action, GeneratedFeatures, ItemRecord
from recloop.core.validation import check_features, to_action
from recloop.features.generator import FeatureGenerator, features_at
from recloop.features.item_identity import batch_hashes, content_hash
from recloop.features.settings import FeatureSettings
from recloop.features.text import Embedder
from recloop.features.timestamp import age_bucket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Cached:
    """An item in memory, compact: its features as JSON bytes (about a sixth of the
    dicts' size, measured); the items in use are kept decoded beside (``hot_items``)."""

    content_hash: str
    blob: bytes
    times: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class PutResult:
    item_id: str
    content_hash: str
    changed: bool
    """False when the item already had exactly this content (nothing recomputed)."""
    features: Mapping[str, Any]


def _cached(record: ItemRecord) -> _Cached:
    # copied to its exact size: orjson's result keeps an ~8 KB buffer (measured), which
    # would make the compact form the biggest
    blob = bytes(memoryview(orjson.dumps(dict(record.features))))
    return _Cached(record.content_hash, blob, record.times)


class ItemCatalogue:
    def __init__(
        self,
        store: ItemStore,
        settings: FeatureSettings,
        stats: LoopStats | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.stats = stats or LoopStats()
        self.generator = FeatureGenerator(settings, embedder)
        self._lock = threading.RLock()
        self._cache: dict[str, _Cached] = {}
        self._hot: dict[str, tuple[_Cached, str, GeneratedFeatures]] = {}
        """Decoded features of the items in use: (entry, age buckets, features)."""
        self._state_version = 0
        self._seq = store.last_seq()
        self._count = store.count()
        self.stats.set("catalogue_items", float(self._count))

    # -- write ---------------------------------------------------------------------------
    def put(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[PutResult]:
        """Insert or update items by raw fields; features are computed for new content only,
        items and the generator's fitted state are written in one transaction."""
        hashes = batch_hashes(items)
        results: dict[str, PutResult] = {}
        with self._lock:
            try:
                records = self._write(items, hashes, results)
            except BaseException:
                self._reload_state()  # a failed batch must not leave half-fitted encoders
                raise
            for record in records:
                self._remember(record.item_id, _cached(record))
            self._count = self.store.count()
        self.stats.set("catalogue_items", float(self._count))
        self.stats.inc("items_featurized_total", float(len(records)))
        self.stats.inc("items_unchanged_total", float(len(items) - len(records)))
        return [results[item_id] for item_id, _ in items]

    def _write(
        self,
        items: Sequence[tuple[str, Mapping[str, Any]]],
        hashes: Mapping[str, str],
        results: dict[str, PutResult],
    ) -> list[ItemRecord]:
        with self.store.writing() as writer:
            version, blob = writer.state()
            if version != self._state_version:  # another process fitted since: start there
                self._load_state(version, blob)
            changed: list[tuple[str, Mapping[str, Any]]] = []
            for item_id, fields in items:
                stored = writer.get(item_id)
                if stored is not None and stored.content_hash == hashes[item_id]:
                    results[item_id] = PutResult(
                        item_id, stored.content_hash, False, stored.features
                    )
                else:
                    changed.append((item_id, fields))
            if not changed:
                return []
            generated = self.generator.featurize([fields for _, fields in changed])
            records = [
                ItemRecord(item_id, hashes[item_id], dict(fields), out.features, out.times)
                for (item_id, fields), out in zip(changed, generated, strict=True)
            ]
            writer.put(records)
            self._state_version = writer.set_state(orjson.dumps(self.generator.state()))
        for record in records:
            results[record.item_id] = PutResult(
                record.item_id, record.content_hash, True, record.features
            )
        return records

    def refit(
        self,
        fit_sample: int = 20_000,
        batch: int = 1000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Fit the feature generator again on the catalogue (the first ``fit_sample`` items
        by id fit the text reduction and topics) and recompute every item's features.

        Every item's representation changes: what a model learned from the old features no
        longer applies (reset the model, or let it relearn). Returns the items recomputed.
        """
        records: list[ItemRecord] = []
        after = ""
        while page := self.store.items(after, 1000):
            records.extend(page)
            after = page[-1].item_id
        generator = FeatureGenerator(self.settings, self.generator.embedder)
        fresh: list[ItemRecord] = []
        chunks = [records[:fit_sample]] + [
            records[i : i + batch] for i in range(fit_sample, len(records), batch)
        ]
        for chunk in chunks:
            if not chunk:
                continue
            generated = generator.featurize([r.fields for r in chunk])
            fresh.extend(
                ItemRecord(r.item_id, r.content_hash, r.fields, out.features, out.times)
                for r, out in zip(chunk, generated, strict=True)
            )
            if progress is not None:
                progress(len(chunk))
        with self._lock:
            with self.store.writing() as writer:
                current = [writer.get(r.item_id) for r in fresh]
                kept = [
                    r
                    for r, now in zip(fresh, current, strict=True)
                    if now is not None and now.content_hash == r.content_hash
                ]  # an item changed or deleted meanwhile keeps what its own write made
                writer.put(kept)
                version = writer.set_state(orjson.dumps(generator.state()))
            self.generator, self._state_version = generator, version
            self._cache.clear()
            self._hot.clear()
        self.stats.inc("items_featurized_total", float(len(kept)))
        return len(kept)

    def delete(self, item_id: str) -> bool:
        with self._lock:
            with self.store.writing() as writer:
                deleted = writer.delete([item_id]) > 0
            self._cache.pop(item_id, None)
            self._count = self.store.count()
        self.stats.set("catalogue_items", float(self._count))
        return deleted

    def _reload_state(self) -> None:
        self._load_state(*self.store.state())

    def _load_state(self, version: int, blob: bytes | None) -> None:
        self.generator = FeatureGenerator(self.settings, self.generator.embedder)
        if blob is not None:
            self.generator.load_state(orjson.loads(blob))
        self._state_version = version

    # -- read ----------------------------------------------------------------------------
    def get(self, item_id: str) -> ItemRecord | None:
        return self.store.get(item_id)

    def __len__(self) -> int:
        return self._count

    def explain(self) -> list[dict[str, str]]:
        """How each field is featurized (kind, why, what was fitted), from the stored state."""
        with self._lock:
            self._reload_state()
            return self.generator.explain()

    def refresh(self) -> int:
        """Follow the change feed: forget what changed elsewhere (re-read on next use)."""
        changes = self.store.since(self._seq)
        if not changes:
            return 0
        with self._lock:
            for record in changes:
                self._cache.pop(record.item_id, None)
            self._seq = changes[-1].seq
            self._count = self.store.count()
        self.stats.set("catalogue_items", float(self._count))
        return len(changes)

    def _lookup(self, item_id: str) -> _Cached | None:
        cached = self._cache.get(item_id)
        if cached is not None:
            return cached
        record = self.store.get(item_id)
        if record is None:
            return None
        cached = _cached(record)
        with self._lock:
            self._remember(item_id, cached)
        self.stats.inc("item_store_lookups_total")
        return cached

    def _remember(self, item_id: str, cached: _Cached) -> None:
        """Keep an item in memory, at most ``max_cached_items`` of them: the bound holds for
        writes too (every PUT of a new item was kept, without limit). Call under the lock."""
        if item_id not in self._cache and len(self._cache) >= self.settings.max_cached_items:
            self._cache.clear()
        self._cache[item_id] = cached

    # -- actions for a rank call ---------------------------------------------------------
    def actions(self, raw: Sequence[Any], now: float) -> tuple[Action, ...]:
        """Rank-call actions as Actions: ready features as given; raw ``fields``
        featurized (and stored); an id alone looked up in the catalogue."""
        out: list[Action] = []
        unknown: list[str] = []
        failed, hashes = self._featurize_new(raw)
        for i, entry in enumerate(raw):
            action = self._action(entry, i, now, unknown, failed, hashes)
            if action is not None:
                out.append(action)
        if unknown:
            self.stats.inc("rejected_total:unknown-item")
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise UnknownItemError(
                f"actions name items not in the catalogue: {shown}{more} (send their fields, "
                "or PUT /v1/items/{id} first)"
            )
        return tuple(out)

    def _featurize_new(self, raw: Sequence[Any]) -> tuple[frozenset[str], dict[str, str]]:
        """Featurize the new raw-field actions of a rank call in one batch (one embedding
        call, one transaction) rather than one by one. Returns the ids whose featurization
        failed (the decision goes on without their features) and the content hash of each
        raw-field action (computed once per call). A batch refused as invalid is left to
        the per-action pass, which names the action at fault."""
        hashes: dict[str, str] = {}
        pending: dict[str, Mapping[str, Any]] = {}
        for entry in raw:
            if type(entry) is not dict or entry.get("fields") is None:
                continue
            item_id, fields = entry.get("id"), entry["fields"]
            if type(item_id) is not str or not isinstance(fields, Mapping) or item_id in hashes:
                continue
            try:
                hashes[item_id] = digest = content_hash(fields)
            except InvalidInputError:
                continue  # the per-action pass names the action at fault
            cached = self._cache.get(item_id)
            if cached is None or cached.content_hash != digest:
                pending[item_id] = fields
        if len(pending) < 2:
            return frozenset(), hashes
        try:
            self.put(list(pending.items()))
        except InvalidInputError:
            return frozenset(), hashes
        except Exception:  # the decision goes on without them, and it is counted
            log.exception("featurizing %d items failed", len(pending))
            self.stats.inc("featurization_errors_total", float(len(pending)))
            return frozenset(pending), hashes
        return frozenset(), hashes

    def enrich(self, actions: Sequence[Action], now: float) -> list[Action]:
        """Featureless actions of catalogue items get the items' features; the rest stay as
        they are (the stream ranks whatever is popular, catalogued or not)."""
        out = []
        for action in actions:
            cached = None if action.features else self._lookup(action.id)
            out.append(
                action if cached is None else Action(action.id, self._at(action.id, cached, now))
            )
        return out

    def _action(
        self,
        entry: Any,
        i: int,
        now: float,
        unknown: list[str],
        failed: frozenset[str] = frozenset(),
        hashes: Mapping[str, str] | None = None,
    ) -> Action | None:
        if type(entry) is dict:
            item_id = entry.get("id")
            if type(item_id) is not str:
                raise InvalidInputError(f"actions[{i}].id must be a string")
            fields = entry.get("fields")
            features = entry.get("features")
            if fields is not None:
                if item_id in failed:
                    if features:
                        check_features(features, f"actions[{i}].features")
                    return Action(item_id, dict(features) if features else {})
                digest = hashes.get(item_id) if hashes else None
                return self._from_fields(item_id, fields, features, i, now, digest)
            if features is not None:
                return Action(item_id, features)
        elif isinstance(entry, Mapping):  # a read-only mapping: as the dict it holds
            return self._action(dict(entry), i, now, unknown, failed, hashes)
        else:
            action = to_action(entry, i)  # an Action or a bare id
            if action.features:
                return action
            item_id = action.id
        mode = self.settings.catalogue
        if mode == "off" or (mode == "auto" and self._count == 0):
            return Action(item_id)  # no catalogue in use: a plain action, as before
        cached = self._lookup(item_id)
        if cached is None:
            if mode == "auto":  # the setting decides, never what earlier requests stored
                self.stats.inc("catalogue_misses_total")
                return Action(item_id)
            unknown.append(item_id)
            return None
        return Action(item_id, self._at(item_id, cached, now))

    def _at(self, item_id: str, cached: _Cached, now: float) -> GeneratedFeatures:
        """The item's features at ``now`` (timestamp fields gain their age); the same object
        while the item and its age buckets stay the same."""
        buckets = "/".join(age_bucket(ts, now) for _, ts in cached.times) if cached.times else ""
        hot = self._hot.get(item_id)
        if hot is not None and hot[0] is cached and hot[1] == buckets:
            return hot[2]
        stored = GeneratedFeatures(orjson.loads(cached.blob), f"{cached.content_hash}/{buckets}")
        features = features_at(stored, cached.times, now)
        if len(self._hot) >= self.settings.hot_items:
            self._hot.clear()
        self._hot[item_id] = (cached, buckets, features)
        return features

    def _from_fields(
        self, item_id: str, fields: Any, features: Any, i: int, now: float, digest: str | None
    ) -> Action:
        if features:
            check_features(features, f"actions[{i}].features")
        if not isinstance(fields, Mapping):
            raise InvalidInputError(f"actions[{i}].fields must be an object")
        cached = self._cache.get(item_id)
        if cached is None or cached.content_hash != (
            digest or content_hash(fields, f"actions[{i}].fields")
        ):
            try:
                self.put([(item_id, fields)])
            except InvalidInputError as exc:
                raise InvalidInputError(f"actions[{i}]: {exc}") from None
            except Exception:  # the decision goes on without them, and it is counted
                log.exception("featurizing item %r failed", item_id)
                self.stats.inc("featurization_errors_total")
                return Action(item_id, dict(features) if features else {})
            cached = self._cache.get(item_id) or self._lookup(item_id)  # the cache may clear
            if cached is None:  # deleted by another request meanwhile
                return Action(item_id, dict(features) if features else {})
        generated = self._at(item_id, cached, now)
        if not features:
            return Action(item_id, generated)
        clash = set(generated) & set(features)
        if clash:
            raise InvalidInputError(
                f"actions[{i}]: features {sorted(clash)} are both given and generated from fields"
            )
        return Action(item_id, GeneratedFeatures({**generated, **features}))
