"""Raw item fields in, features out: the per-loop feature spec applied to a batch of items.

Each field gets an encoder for its kind (:mod:`.spec`); encoders that learn from the data
(quantiles, category counts) are fitted incrementally as items arrive, the text reduction
once on the first batch. A batch is checked whole before anything is fitted, so a bad
item leaves the generator as it was.

The features of a field sit under the field's name (``{"title": {"e0": .., "topic": "t3"},
"price": {"z": .., "bin": "q4"}, "tags": [..]}``): in VW text a map is its own namespace,
``|Atitle e0:0.12 topic=t3 |Aprice z:0.3 bin=q4``, and scalars sit in ``|A``; the default
``-q CA`` interaction crosses them all with the context (VW pairs namespaces by initial).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recloop.core.errors import InvalidInputError
from recloop.core.types import GeneratedFeatures
from recloop.features.categorical import CategoricalEncoder, to_category, to_tags
from recloop.features.numeric import NumericEncoder, to_number
from recloop.features.settings import FeatureSettings
from recloop.features.spec import FieldKind, FieldPlan, parse_timestamp, plan_fields
from recloop.features.text import Embedder, MiniLMEmbedder, TextEncoder
from recloop.features.timestamp import age_bucket, cyclical

STATE_VERSION = 1
MAX_FIELDS = 64


@dataclass(frozen=True, slots=True)
class ItemFeatures:
    """An item's generated features, and its timestamp fields (their age is added at
    decision time, not cached)."""

    features: GeneratedFeatures
    times: tuple[tuple[str, float], ...] = ()

    def at(self, now: float) -> GeneratedFeatures:
        """The features at decision time ``now``: each timestamp field gains its age."""
        return features_at(self.features, self.times, now)


def features_at(
    features: GeneratedFeatures, times: tuple[tuple[str, float], ...], now: float
) -> GeneratedFeatures:
    if not times:
        return features
    out = GeneratedFeatures(features, features.key)
    for name, ts in times:
        out[name] = {**out[name], "age": age_bucket(ts, now)}
    return out


@dataclass
class _Column:
    plan: FieldPlan
    values: list[Any] = field(default_factory=list)
    """Coerced values, None where the item has no value."""


class FeatureGenerator:
    def __init__(self, settings: FeatureSettings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder: Embedder = embedder or MiniLMEmbedder()
        self.plans: dict[str, FieldPlan] = {}
        self.encoders: dict[str, Any] = {}

    # -- featurize -------------------------------------------------------------------------
    def featurize(self, items: Sequence[Mapping[str, Any]], fit: bool = True) -> list[ItemFeatures]:
        """Features of each item; with ``fit`` the encoders learn from these items first."""
        for i, item in enumerate(items):
            check_fields(item, f"items[{i}].fields")
        plans = plan_fields(self.settings.fields, items, self.plans)
        if len(plans) > MAX_FIELDS:
            raise InvalidInputError(f"items have {len(plans)} fields; at most {MAX_FIELDS}")
        columns = {name: _coerce(plan, items) for name, plan in plans.items() if plan.kind != "id"}
        self.plans = plans  # every value fits its field's kind: commit the plans
        encoded: dict[str, list[Any]] = {}
        for name, column in columns.items():
            encoded[name] = self._encode(name, column, fit)
        out: list[ItemFeatures] = []
        for i in range(len(items)):
            features = GeneratedFeatures()
            times: list[tuple[str, float]] = []
            for name, column in columns.items():
                value = encoded[name][i]
                if value is None:
                    continue
                features[name] = value
                if column.plan.kind == "timestamp":
                    times.append((name, column.values[i]))
            out.append(ItemFeatures(features, tuple(times)))
        return out

    def _encode(self, name: str, column: _Column, fit: bool) -> list[Any]:
        kind = column.plan.kind
        present = [v for v in column.values if v is not None]
        encoder = self.encoders.get(name)
        if encoder is None:
            encoder = self.encoders[name] = self._new_encoder(kind)
        if kind == "timestamp":
            return [None if v is None else cyclical(v) for v in column.values]
        if kind == "text":
            assert isinstance(encoder, TextEncoder)
            vectors = iter(encoder.encode_many(present)) if present else iter(())
            return [None if v is None else next(vectors) for v in column.values]
        if kind == "numeric":
            assert isinstance(encoder, NumericEncoder)
            if fit:
                encoder.partial_fit(present)
            return [None if v is None else encoder.encode(v) for v in column.values]
        assert isinstance(encoder, CategoricalEncoder)
        if kind == "tags":
            if fit:
                encoder.partial_fit(tag for tags in present for tag in dict.fromkeys(tags))
            return [None if v is None else encoder.encode_tags(v) for v in column.values]
        if fit:
            encoder.partial_fit(present)
        return [None if v is None else encoder.encode(v) for v in column.values]

    def _new_encoder(self, kind: FieldKind) -> Any:
        s = self.settings
        if kind == "text":
            return TextEncoder(
                self.embedder, s.text_dim, s.text_reduction, s.text_topics, s.text_keywords, s.seed
            )
        if kind == "numeric":
            return NumericEncoder(s.numeric_bins)
        if kind in ("categorical", "tags"):
            return CategoricalEncoder(s.rare_min_count)
        return None  # timestamps need no fitting

    # -- explain and persist ---------------------------------------------------------------
    def explain(self) -> list[dict[str, str]]:
        rows = []
        for name, plan in self.plans.items():
            row = plan.to_dict()
            encoder = self.encoders.get(name)
            if plan.kind == "timestamp":
                row["fitted"] = "hour of day and weekday (cyclical), age bucket at rank time"
            elif plan.kind == "id":
                row["fitted"] = "not a feature (the action id is one already)"
            else:
                row["fitted"] = encoder.describe() if encoder is not None else "no values yet"
            rows.append(row)
        return rows

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "plans": [p.to_dict() for p in self.plans.values()],
            "encoders": {
                name: enc.state() for name, enc in self.encoders.items() if enc is not None
            },
        }

    def load_state(self, raw: Mapping[str, Any]) -> None:
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported feature state version {raw.get('version')!r}")
        plans = {
            p["field"]: FieldPlan(p["field"], p["kind"], p["source"], p["reason"])
            for p in raw["plans"]
        }
        encoders: dict[str, Any] = {}
        for name, plan in plans.items():
            state = raw["encoders"].get(name)
            if plan.kind == "text" and state is not None:
                encoders[name] = TextEncoder.from_state(state, self.embedder)
            elif plan.kind == "numeric" and state is not None:
                encoders[name] = NumericEncoder.from_state(state)
            elif plan.kind in ("categorical", "tags") and state is not None:
                encoders[name] = CategoricalEncoder.from_state(state)
        self.plans, self.encoders = plans, encoders


def check_fields(fields: object, where: str) -> None:
    if not isinstance(fields, Mapping):
        raise InvalidInputError(f"{where} must be an object, got {type(fields).__name__}")
    for name, value in fields.items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{where}: field names must be non-empty strings")
        if isinstance(value, Mapping):
            raise InvalidInputError(
                f"{where}.{name}: raw fields are flat values; ready-made nested features "
                "go in 'features'"
            )


def _coerce(plan: FieldPlan, items: Sequence[Mapping[str, Any]]) -> _Column:
    """The field's values in the form its kind needs; an InvalidInputError naming the field
    and the item for a value that contradicts the kind."""
    column = _Column(plan)
    convert = _CONVERTERS[plan.kind]
    for i, item in enumerate(items):
        raw = item.get(plan.name)
        if raw is None or (isinstance(raw, str) and not raw.strip() and plan.kind != "text"):
            column.values.append(None)
            continue
        value = convert(raw)
        if value is None:
            shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
            raise InvalidInputError(
                f"field {plan.name!r} is {plan.kind} ({plan.source}: {plan.reason}), but "
                f"item {i} has {shown}"
            )
        column.values.append(value)
    return column


def _to_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


_CONVERTERS: dict[str, Any] = {
    "text": _to_text,
    "categorical": to_category,
    "numeric": to_number,
    "tags": to_tags,
    "timestamp": parse_timestamp,
    "id": to_category,
}
