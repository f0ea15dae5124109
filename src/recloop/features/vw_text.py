"""Vowpal Wabbit text for action-dependent-feature (ADF) examples.

Context features go in namespace ``C`` on the shared line, action features in ``A`` (plus
``id=<action id>`` so a model can learn per-action values with no features at all), except
that each top-level mapping of an action's features gets its own namespace ``A<key>``
(the feature generator's fields: ``|Atitle e0:0.12 topic=t3``). Deeper mappings are
flattened to ``outer.inner``; strings are categorical (``k=v``), numbers are
weighted (``k:1.5``), bools are 0/1 numbers (so ``True`` and ``1`` mean the same, as they
do in Python), lists are bags (``k=v1 k=v2``).

Text building is the costliest part of a VW prediction, so :class:`VWText` caches the
line of each (action id, flat features) it has seen: catalogues repeat, contexts do not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recloop.core.types import Action, Context, GeneratedFeatures

CONTEXT_NAMESPACE = "C"
ACTION_NAMESPACE = "A"

_UNSAFE = str.maketrans({" ": "_", "\t": "_", "\n": "_", "\r": "_", "|": "_", ":": "_"})


def _tokens(features: Mapping[str, Any], prefix: str, out: list[str]) -> None:
    for key, value in features.items():
        name = prefix + key.translate(_UNSAFE)
        kind = type(value)
        if kind is float or kind is int:
            out.append(f"{name}:{value}")
        elif kind is str:
            out.append(f"{name}={value.translate(_UNSAFE)}")
        elif kind is bool:
            out.append(f"{name}:{int(value)}")
        elif isinstance(value, Mapping):
            _tokens(value, name + ".", out)
        elif isinstance(value, list | tuple):
            for item in value:
                out.append(f"{name}={str(item).translate(_UNSAFE)}")
        elif isinstance(value, int | float):  # numpy scalars and other numeric subclasses
            out.append(f"{name}:{value}")
        elif isinstance(value, str):
            out.append(f"{name}={value.translate(_UNSAFE)}")
        # None: a missing feature, nothing to write


def features_text(features: Mapping[str, Any]) -> str:
    out: list[str] = []
    _tokens(features, "", out)
    return " ".join(out)


def shared_line(context: Context) -> str:
    return f"shared |{CONTEXT_NAMESPACE} {features_text(context)}"


def _has_mapping(features: Mapping[str, Any]) -> bool:
    for value in features.values():
        kind = type(value)
        if kind is float or kind is int or kind is str or kind is bool or kind is list:
            continue
        if isinstance(value, Mapping):
            return True
    return False


def action_line(action: Action) -> str:
    """``|A id=<id> <flat features>``, then one namespace ``A<key>`` per top-level mapping
    (a generated field such as ``title``, or any nested map): its own VW namespace, so
    offline experiments can tell them apart, still crossed by ``-q CA`` (VW interacts
    namespaces by their first letter)."""
    features = action.features
    if not _has_mapping(features):  # the common case: one namespace, one pass
        return f"|{ACTION_NAMESPACE} id={action.id.translate(_UNSAFE)} {features_text(features)}"
    flat: list[str] = []
    spaces: list[str] = []
    for key, value in features.items():
        if isinstance(value, Mapping):
            inner: list[str] = []
            _tokens(value, "", inner)
            if inner:
                spaces.append(f"|{ACTION_NAMESPACE}{key.translate(_UNSAFE)} {' '.join(inner)}")
        else:
            _tokens({key: value}, "", flat)
    head = f"|{ACTION_NAMESPACE} id={action.id.translate(_UNSAFE)} {' '.join(flat)}"
    return " ".join([head, *spaces]) if spaces else head


def adf_example(context: Context, actions: Sequence[Action]) -> list[str]:
    """Lines of an unlabelled multi-line example, for prediction."""
    return [shared_line(context), *(action_line(a) for a in actions)]


def labelled_adf_example(
    context: Context, actions: Sequence[Action], chosen_index: int, cost: float, probability: float
) -> list[str]:
    """Lines of a labelled example: the chosen action carries ``0:cost:probability``."""
    lines = adf_example(context, actions)
    lines[chosen_index + 1] = f"0:{cost}:{probability} {lines[chosen_index + 1]}"
    return lines


MAX_CACHED_LINE = 2_000
"""Longer action lines are built each time, never cached: a catalogue's lines are short and
come back, a line of kilobytes of features is a one-off (or an attack)."""


class VWText:
    """Builds the same text as :func:`adf_example`, caching action lines, bounded both in
    lines (``max_cached_actions``) and in characters (``max_cached_chars``; a line's key
    holds the features it is made of, about as big again). Bounded by count alone, the
    cache grew with what clients sent: 20,000 actions of 1.4 KB of features held 77 MB,
    and it kept up to 100,000 of any size before it was cleared."""

    def __init__(
        self, max_cached_actions: int = 100_000, max_cached_chars: int = 8_000_000
    ) -> None:
        self._max = max_cached_actions
        self._max_chars = max_cached_chars
        self._chars = 0
        self._actions: dict[tuple[Any, ...], str] = {}
        self._generated: dict[str, tuple[str, str]] = {}
        """Catalogue items: action id -> (the content key of its features, its line)."""

    @property
    def cached_chars(self) -> int:
        """Characters of the cached lines (what ``max_cached_chars`` bounds)."""
        return self._chars

    def _room(self, cache: dict[Any, Any], line: str) -> bool:
        """Whether ``line`` may be cached in ``cache``: both caches are cleared when it
        would not fit (what is in use comes back at once)."""
        if len(line) > MAX_CACHED_LINE:
            return False
        if len(cache) >= self._max or self._chars + len(line) > self._max_chars:
            self._actions.clear()
            self._generated.clear()
            self._chars = 0
        self._chars += len(line)
        return True

    def action_line(self, action: Action) -> str:
        features = action.features
        if type(features) is GeneratedFeatures and features.key:
            hit = self._generated.get(action.id)
            if hit is not None and hit[0] == features.key:
                return hit[1]
            built = action_line(action)
            if self._room(self._generated, built):
                old = self._generated.pop(action.id, None)
                if old is not None:  # the item's content changed: its old line goes
                    self._chars -= len(old[1])
                self._generated[action.id] = (features.key, built)
            return built
        try:
            key = (action.id, *action.features.items())
            line = self._actions.get(key)
        except TypeError:  # nested or list-valued features: not hashable, build each time
            return action_line(action)
        if line is None:
            line = action_line(action)
            if self._room(self._actions, line):
                self._actions[key] = line
        return line

    def example(self, context: Context, actions: Sequence[Action]) -> list[str]:
        return [shared_line(context), *(self.action_line(a) for a in actions)]

    def labelled(
        self,
        context: Context,
        actions: Sequence[Action],
        chosen_index: int,
        cost: float,
        probability: float,
    ) -> list[str]:
        lines = self.example(context, actions)
        lines[chosen_index + 1] = f"0:{cost}:{probability} {lines[chosen_index + 1]}"
        return lines
