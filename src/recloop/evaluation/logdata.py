"""Logged bandit feedback as arrays, from a CSV/Parquet file, recloop's joined log or code.

A log file has one row per logged decision (or per slot of a slate): ``action`` (integer
index), ``reward``, ``propensity`` (the logging policy's probability of that action, at that
position), optional ``position`` (0-based slot) and context features in columns prefixed
``x_``. Candidate action features may come from a second file, one row per action.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recloop.core.errors import InvalidInputError
from recloop.core.types import Action, Context, JoinedExample, available_actions

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BanditData:
    """What an off-policy estimator needs to know about the logged rows."""

    action: IntArray
    reward: FloatArray
    pscore: FloatArray
    n_actions: int
    position: IntArray | None = None
    context: FloatArray | None = None
    action_features: FloatArray | None = None
    context_names: tuple[str, ...] = ()
    action_ids: tuple[str, ...] = ()
    """Names of the action indices when known (recloop logs); else ``"0".."n-1"``."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.action)
        for name in ("reward", "pscore"):
            if len(getattr(self, name)) != n:
                raise InvalidInputError(f"{name} has {len(getattr(self, name))} rows, not {n}")
        if n == 0:
            raise InvalidInputError("the log has no rows")
        if self.action.min() < 0 or self.action.max() >= self.n_actions:
            raise InvalidInputError(
                f"action indices must be in [0, {self.n_actions}); "
                f"found {self.action.min()}..{self.action.max()}"
            )
        if not np.all(np.isfinite(self.reward)):
            raise InvalidInputError("rewards must be finite numbers (found NaN or inf)")
        p = self.pscore
        if not np.all(np.isfinite(p)) or p.min() <= 0.0 or p.max() > 1.0:
            raise InvalidInputError("propensities must be in (0, 1]")
        if self.position is not None:
            if len(self.position) != n:
                raise InvalidInputError("position must have one value per row")
            if self.position.min() < 0:
                raise InvalidInputError("positions are 0-based slot indices (>= 0)")
        if self.context is not None and not np.all(np.isfinite(self.context)):
            raise InvalidInputError("context features must be finite numbers")

    @property
    def n_rows(self) -> int:
        return len(self.action)

    @property
    def len_list(self) -> int:
        """Slots per slate (1 without positions)."""
        return 1 if self.position is None else int(self.position.max()) + 1


def read_table(path: Path, *, json_lines: bool = False) -> Any:
    """A pandas frame from CSV or Parquet (and JSON lines when ``json_lines``), with a
    clear error for a missing file or another format."""
    import pandas as pd

    if not path.exists():
        raise InvalidInputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if json_lines and suffix in (".jsonl", ".ndjson", ".json"):
        return pd.read_json(path, lines=suffix != ".json")
    expected = ".csv, .parquet or .jsonl" if json_lines else "a .csv or .parquet file"
    raise InvalidInputError(f"{path}: expected {expected}")


def _numeric(frame: Any, column: str, path: Path) -> FloatArray:
    import pandas as pd

    values: FloatArray = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values))
    if len(bad):
        raise InvalidInputError(
            f"{path}: column {column!r} has a missing or non-numeric value at row {bad[0]}"
        )
    return values


def _integers(frame: Any, column: str, path: Path) -> IntArray:
    values = _numeric(frame, column, path)
    if not np.all(values == np.round(values)):
        raise InvalidInputError(f"{path}: column {column!r} must hold integers")
    return values.astype(np.int64)


def read_log(path: str | Path, action_features: str | Path | None = None) -> BanditData:
    """Read a CSV or Parquet log (see the module docstring for its columns)."""
    path = Path(path)
    frame = read_table(path)
    missing = [c for c in ("action", "reward", "propensity") if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{path}: missing column(s) {missing}")
    action = _integers(frame, "action", path)
    x_cols = [c for c in frame.columns if str(c).startswith("x_")]
    context = np.column_stack([_numeric(frame, c, path) for c in x_cols]) if x_cols else None
    features = None
    n_actions = int(action.max()) + 1 if len(action) else 0
    if action_features is not None:
        af_path = Path(action_features)
        af = read_table(af_path)
        cols = [c for c in af.columns if c != "action"]
        if "action" in af.columns:
            af = af.sort_values("action")
            order = _integers(af, "action", af_path)
            if not np.array_equal(order, np.arange(len(af))):
                raise InvalidInputError(f"{af_path}: 'action' must list 0..n-1 once each")
        features = np.column_stack([_numeric(af, c, af_path) for c in cols])
        if features.shape[0] < n_actions:
            raise InvalidInputError(
                f"{af_path}: {features.shape[0]} action rows, but the log uses action "
                f"{n_actions - 1}"
            )
        n_actions = features.shape[0]
    return BanditData(
        action=action,
        reward=_numeric(frame, "reward", path),
        pscore=_numeric(frame, "propensity", path),
        n_actions=n_actions,
        position=_integers(frame, "position", path) if "position" in frame.columns else None,
        context=context,
        action_features=features,
        context_names=tuple(str(c) for c in x_cols),
        action_ids=tuple(str(i) for i in range(n_actions)),
    )


def write_log(path: str | Path, data: BanditData) -> None:
    """The inverse of :func:`read_log` (handy for exports and tests)."""
    import pandas as pd

    columns: dict[str, Any] = {
        "action": data.action,
        "reward": data.reward,
        "propensity": data.pscore,
    }
    if data.position is not None:
        columns["position"] = data.position
    if data.context is not None:
        names = data.context_names or tuple(f"x_{j}" for j in range(data.context.shape[1]))
        for j, name in enumerate(names):
            columns[name] = data.context[:, j]
    frame = pd.DataFrame(columns)
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


@dataclass(frozen=True, slots=True)
class JoinedLog:
    """recloop's own joined examples, with what a Policy needs to score them again."""

    data: BanditData
    contexts: Sequence[Context]
    actions: Sequence[Sequence[Action]]
    """The available actions of each decision, in logged order (index = ``data.action``)."""


def from_joined(examples: Sequence[JoinedExample]) -> JoinedLog:
    """Turn joined examples into bandit data. Action sets vary per decision, so indices are
    positions in each decision's available actions; ``n_actions`` is the largest set."""
    if not examples:
        raise InvalidInputError("no joined examples to evaluate")
    contexts: list[Context] = []
    action_sets: list[list[Action]] = []
    chosen: list[int] = []
    for e in examples:
        d = e.decision
        acts = available_actions(d.actions, d.excluded)
        index = next((i for i, a in enumerate(acts) if a.id == d.chosen), None)
        if index is None:
            raise InvalidInputError(f"event {d.event_id}: chosen action not among its actions")
        contexts.append(d.context)
        action_sets.append(acts)
        chosen.append(index)
    n_actions = max(len(a) for a in action_sets)
    data = BanditData(
        action=np.asarray(chosen, dtype=np.int64),
        reward=np.asarray([e.reward for e in examples], dtype=np.float64),
        pscore=np.asarray([e.decision.probability for e in examples], dtype=np.float64),
        n_actions=n_actions,
        extra={"event_ids": [e.decision.event_id for e in examples]},
    )
    return JoinedLog(data=data, contexts=contexts, actions=action_sets)
