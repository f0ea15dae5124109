"""From interaction logs to RL trajectories (NumPy only: the agents add embeddings).

An interaction log is one row per (user, item, behaviour, time), from the synthetic world
or from a user's own CSV/Parquet/JSONL file. Trajectories are per-session sequences of
steps: the state is the user and the last N items they engaged with (reward > 0) before
the step, the action is the item shown/chosen, the reward comes from the behaviour, and a
step is terminal at the end of its session. Splits are by time, never shuffled, so the test
set is the future.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recloop.core.errors import InvalidInputError
from recloop.evaluation.logdata import read_table

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]

DEFAULT_BEHAVIOUR_REWARDS: Mapping[str, float] = {
    "skip": 0.0,
    "impression": 0.0,
    "view": 1.0,
    "click": 1.0,
    "cart": 2.0,
    "favourite": 2.0,
    "buy": 3.0,
}


@dataclass(frozen=True, slots=True)
class InteractionLog:
    user: Ints
    item: Ints
    reward: Floats
    timestamp: Floats
    session: Ints
    propensity: Floats | None
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.item)


def read_interactions(
    path: str | Path,
    rewards: Mapping[str, float] = DEFAULT_BEHAVIOUR_REWARDS,
    session_gap_seconds: float = 1800.0,
) -> InteractionLog:
    """A user's own data: columns ``user``, ``item``, ``behaviour``, ``timestamp`` (seconds,
    or anything pandas parses as a date), optional ``propensity`` and ``session``. Sessions
    are cut at gaps longer than ``session_gap_seconds`` unless given."""
    import pandas as pd

    path = Path(path)
    frame = read_table(path, json_lines=True)
    missing = [c for c in ("user", "item", "behaviour", "timestamp") if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{path}: missing column(s) {missing}")
    if len(frame) == 0:
        raise InvalidInputError(f"{path}: no rows")
    if frame[["user", "item", "behaviour", "timestamp"]].isna().any().any():
        bad = frame[frame[["user", "item", "behaviour", "timestamp"]].isna().any(axis=1)]
        raise InvalidInputError(f"{path}: missing values in row {int(bad.index[0]) + 1}")
    unknown = sorted(set(frame["behaviour"].astype(str)) - set(rewards))
    if unknown:
        raise InvalidInputError(
            f"{path}: unknown behaviour(s) {unknown[:5]}; known: {sorted(rewards)}"
        )
    ts = frame["timestamp"]
    if not pd.api.types.is_numeric_dtype(ts):
        parsed = pd.to_datetime(ts, errors="coerce", utc=True)
        if parsed.isna().any():
            raise InvalidInputError(f"{path}: timestamps must be numbers or dates")
        # seconds since the epoch, whatever the datetime resolution (ns in pandas 2, may be
        # us in pandas 3)
        ts = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    frame = frame.assign(timestamp=ts.astype(float)).sort_values(["timestamp"], kind="stable")
    users, user_index = np.unique(frame["user"].astype(str).to_numpy(), return_inverse=True)
    items, item_index = np.unique(frame["item"].astype(str).to_numpy(), return_inverse=True)
    timestamp = frame["timestamp"].to_numpy(dtype=np.float64)
    if "session" in frame.columns:
        session = pd.factorize(frame["session"].astype(str))[0].astype(np.int64)
    else:
        session = _sessions(user_index.astype(np.int64), timestamp, session_gap_seconds)
    propensity = None
    if "propensity" in frame.columns:
        propensity = pd.to_numeric(frame["propensity"], errors="coerce").to_numpy(np.float64)
        if not np.all((propensity > 0) & (propensity <= 1)):
            raise InvalidInputError(f"{path}: propensity must be in (0, 1] on every row")
    reward = frame["behaviour"].astype(str).map(dict(rewards)).to_numpy(dtype=np.float64)
    return InteractionLog(
        user=user_index.astype(np.int64),
        item=item_index.astype(np.int64),
        reward=reward,
        timestamp=timestamp,
        session=session,
        propensity=propensity,
        user_ids=tuple(str(u) for u in users),
        item_ids=tuple(str(i) for i in items),
    )


def _sessions(user: Ints, timestamp: Floats, gap: float) -> Ints:
    """A new session id where a user's previous event is more than ``gap`` seconds ago."""
    order = np.lexsort((timestamp, user))
    u, t = user[order], timestamp[order]
    new = np.ones(len(u), dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (t[1:] - t[:-1] > gap)
    ids = np.cumsum(new) - 1
    out = np.empty(len(u), dtype=np.int64)
    out[order] = ids
    return out


@dataclass(frozen=True, slots=True)
class Trajectories:
    """One row per step. ``history``/``next_history`` hold item indices, most recent last,
    padded on the left with ``pad`` (= the number of items)."""

    user: Ints
    history: Ints
    action: Ints
    reward: Floats
    next_history: Ints
    done: NDArray[np.bool_]
    propensity: Floats | None
    timestamp: Floats
    session: Ints
    n_users: int
    n_items: int

    @property
    def pad(self) -> int:
        return self.n_items

    def __len__(self) -> int:
        return len(self.action)

    def take(self, rows: Ints) -> Trajectories:
        return Trajectories(
            self.user[rows],
            self.history[rows],
            self.action[rows],
            self.reward[rows],
            self.next_history[rows],
            self.done[rows],
            None if self.propensity is None else self.propensity[rows],
            self.timestamp[rows],
            self.session[rows],
            self.n_users,
            self.n_items,
        )


def build_trajectories(log: InteractionLog, last_n: int = 10) -> Trajectories:
    """Walk each user's events in time order, keeping their last ``last_n`` engaged items."""
    if len(log) == 0:
        raise InvalidInputError("the interaction log is empty")
    if last_n < 1:
        raise InvalidInputError("last_n must be at least 1")
    pad = log.n_items
    order = np.lexsort((log.timestamp, log.user))
    n = len(order)
    history = np.full((n, last_n), pad, dtype=np.int64)
    next_history = np.full((n, last_n), pad, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    current: list[int] = []
    prev_user = -1
    users, items, rewards, sessions = (
        log.user[order],
        log.item[order],
        log.reward[order],
        (log.session[order]),
    )
    for k in range(n):
        if users[k] != prev_user:
            current, prev_user = [], int(users[k])
        if current:
            history[k, -len(current) :] = current
        if rewards[k] > 0:
            current = [*current, int(items[k])][-last_n:]
        if current:
            next_history[k, -len(current) :] = current
        done[k] = k + 1 == n or users[k + 1] != users[k] or sessions[k + 1] != sessions[k]
    # back to time order (ties by user) so splits by time are contiguous
    back = np.argsort(log.timestamp[order], kind="stable")
    return Trajectories(
        user=users[back],
        history=history[back],
        action=items[back],
        reward=rewards[back],
        next_history=next_history[back],
        done=done[back],
        propensity=None if log.propensity is None else log.propensity[order][back],
        timestamp=log.timestamp[order][back],
        session=sessions[back],
        n_users=log.n_users,
        n_items=log.n_items,
    )


def split_by_time(
    data: Trajectories, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[Trajectories, Trajectories, Trajectories]:
    """Train / validation / test by time: the test set is the latest ``test_fraction``."""
    if not (
        0 <= valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1
    ):
        raise InvalidInputError("fractions must be in [0, 1) and leave room for training")
    t = data.timestamp
    order = np.argsort(t, kind="stable")
    n = len(order)
    n_test = max(1, round(n * test_fraction))
    n_valid = round(n * valid_fraction)
    train = order[: n - n_test - n_valid]
    valid = order[n - n_test - n_valid : n - n_test]
    test = order[n - n_test :]
    return data.take(train), data.take(valid), data.take(test)
