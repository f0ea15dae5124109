"""Per-user state, as pure logic: the same class runs in the embedded runner and in Flink.

A user's state is the fold of their behaviour events *in event-time order*: the last N
items with their behaviours, counts per behaviour, first/last seen, sessions (a gap longer
than ``session_gap_seconds`` starts a new one) and **activeness**, DRN's survival-style
return intensity (Zheng et al., WWW 2018, section 4.3): it starts at ``S0`` on a user's
first event, decays as ``S(t) = S(t0) exp(-lambda0 (t - t0))`` between events, and each
return (a new session) adds ``Sa``, capped at 1.

Events may arrive out of order. Those within ``allowed_lateness_seconds`` of the newest
event the user has seen are placed where they belong (the newer events are taken back with
exact undo records and applied again after it); older ones are refused as too late, for the
caller to count and dead-letter.
Lateness is measured per user, so a user's state never depends on how other users' events
are interleaved with theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from recloop.features.activeness import Activeness
from recloop.streaming.events import BehaviourEvent

Undo = tuple[
    tuple[float | None, float | None, float | None, int, float], tuple[str, str, float] | None
]
"""What taking an event back needs: the scalars before it, and the item it pushed out."""


@dataclass(frozen=True, slots=True)
class UserStateConfig:
    last_n: int = 10
    """How many recent (item, behaviour, time) entries to keep."""
    session_gap_seconds: float = 1800.0
    """Inactivity that ends a session; the next event is a return."""
    allowed_lateness_seconds: float = 60.0
    """How far behind the user's newest event an event may arrive and still be placed."""
    ttl_seconds: float = 30 * 86400.0
    """A user not seen for this long is forgotten (their state expires)."""
    activeness_start: float = 0.5
    """S0: activeness at a user's first event (DRN's value)."""
    activeness_return_boost: float = 0.32
    """Sa: added at each return (DRN's value)."""
    activeness_decay_per_second: float = 1.2e-5
    """lambda0: the constant hazard rate (DRN's value, per second)."""

    @property
    def activeness(self) -> Activeness:
        return Activeness(
            self.activeness_start, self.activeness_return_boost, self.activeness_decay_per_second
        )

    def __post_init__(self) -> None:
        if self.last_n < 1:
            raise ValueError("last_n must be at least 1")
        if self.allowed_lateness_seconds < 0 or self.session_gap_seconds <= 0:
            raise ValueError("lateness must be >= 0 and the session gap > 0")


@dataclass(slots=True)
class UserState:
    """The fold of one user's events in event-time order (no lateness handling here)."""

    user_id: str
    version: int = 0
    """Events applied: a new version on every change (recommendations record it)."""
    last_items: list[tuple[str, str, float]] = field(default_factory=list)
    """(item_id, behaviour, timestamp), oldest first, at most ``last_n``."""
    counts: dict[str, int] = field(default_factory=dict)
    first_seen: float | None = None
    last_seen: float | None = None
    session_start: float | None = None
    sessions: int = 0
    activeness: float = 0.0
    """Activeness at ``last_seen``; see :meth:`activeness_at` for later times."""

    def apply(self, event: BehaviourEvent, cfg: UserStateConfig) -> Undo:
        """Fold one event that is not older than the last one applied; returns what
        :meth:`undo` needs to take it back exactly."""
        before = (self.first_seen, self.last_seen, self.session_start, self.sessions,
                  self.activeness)  # fmt: skip
        evicted = None
        ts = event.timestamp
        if self.last_seen is None:
            self.first_seen = self.session_start = ts
            self.sessions = 1
            self.activeness = cfg.activeness_start
        else:
            gap = ts - self.last_seen
            if gap > cfg.session_gap_seconds:
                self.sessions += 1
                self.session_start = ts
                self.activeness = cfg.activeness.after_return(self.activeness, gap)
            else:
                self.activeness = cfg.activeness.decayed(self.activeness, gap)
        self.last_seen = ts
        self.counts[event.behaviour] = self.counts.get(event.behaviour, 0) + 1
        self.last_items.append((event.item_id, event.behaviour, ts))
        if len(self.last_items) > cfg.last_n:
            evicted = self.last_items.pop(0)
        self.version += 1
        return before, evicted

    def undo(self, event: BehaviourEvent, record: Undo) -> None:
        """Take back the last event applied (restores the exact previous values)."""
        before, evicted = record
        (self.first_seen, self.last_seen, self.session_start, self.sessions,
         self.activeness) = before  # fmt: skip
        left = self.counts[event.behaviour] - 1
        if left:
            self.counts[event.behaviour] = left
        else:
            del self.counts[event.behaviour]
        self.last_items.pop()
        if evicted is not None:
            self.last_items.insert(0, evicted)
        self.version -= 1

    def activeness_at(self, now: float, cfg: UserStateConfig) -> float:
        if self.last_seen is None:
            return 0.0
        return cfg.activeness.decayed(self.activeness, now - self.last_seen)

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    def consumed(self) -> set[str]:
        """Items the user has recently seen (not recommended again)."""
        return {item for item, _, _ in self.last_items}

    def copy(self) -> UserState:
        return UserState(
            self.user_id,
            self.version,
            list(self.last_items),
            dict(self.counts),
            self.first_seen,
            self.last_seen,
            self.session_start,
            self.sessions,
            self.activeness,
        )

    def to_dict(self) -> dict[str, Any]:
        """A view for serialising right away (it shares the lists, it does not copy)."""
        return {
            "user_id": self.user_id,
            "version": self.version,
            "last_items": self.last_items,  # tuples serialise as arrays; not copied
            "counts": self.counts,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "session_start": self.session_start,
            "sessions": self.sessions,
            "activeness": self.activeness,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> UserState:
        return cls(
            raw["user_id"],
            int(raw["version"]),
            [(str(i), str(b), float(t)) for i, b, t in raw["last_items"]],
            {str(k): int(v) for k, v in raw["counts"].items()},
            raw["first_seen"],
            raw["last_seen"],
            raw["session_start"],
            int(raw["sessions"]),
            float(raw["activeness"]),
        )

    def features(self, now: float, cfg: UserStateConfig) -> dict[str, Any]:
        """The state as a policy context (named features)."""
        return {
            "user_id": self.user_id,
            "recent_items": [item for item, _, _ in self.last_items],
            "counts": dict(self.counts),
            "sessions": self.sessions,
            "activeness": self.activeness_at(now, cfg),
        }


Outcome = Literal["applied", "late", "duplicate"]


@dataclass(slots=True)
class UserStream:
    """One user's state with out-of-order handling. ``pending`` holds the events within
    the lateness horizon of the newest one, each with its undo record: a late event takes
    back the newer ones, goes in, and they are applied again. Older events need nothing
    kept, so a user costs one state plus a few recent events."""

    state: UserState
    pending: list[tuple[BehaviourEvent, Undo]] = field(default_factory=list)

    @classmethod
    def new(cls, user_id: str) -> UserStream:
        return cls(UserState(user_id))

    def add(self, event: BehaviourEvent, cfg: UserStateConfig) -> Outcome:
        """Place one event; ``late`` and ``duplicate`` events change nothing."""
        state = self.state
        last = state.last_seen
        if last is not None and event.timestamp - last > cfg.ttl_seconds:
            # idle past the TTL: the user starts afresh (both runners, whenever they
            # also sweep idle users out of memory)
            state = self.state = UserState(state.user_id)
            self.pending = []
            last = None
        if last is not None and event.timestamp < last - cfg.allowed_lateness_seconds:
            return "late"
        pending = self.pending
        if not pending or event.order > pending[-1][0].order:
            pending.append((event, state.apply(event, cfg)))  # in order: the fast path
        else:
            order = event.order
            taken: list[BehaviourEvent] = []
            while pending and pending[-1][0].order > order:
                newer, record = pending.pop()
                state.undo(newer, record)
                taken.append(newer)
            if pending and pending[-1][0].order == order:  # seen already: put back as was
                for newer in reversed(taken):
                    pending.append((newer, state.apply(newer, cfg)))
                return "duplicate"
            pending.append((event, state.apply(event, cfg)))
            for newer in reversed(taken):
                pending.append((newer, state.apply(newer, cfg)))
        self._settle(cfg)
        return "applied"

    def _settle(self, cfg: UserStateConfig) -> None:
        """Forget the undo records of events no accepted late event can precede."""
        assert self.state.last_seen is not None
        horizon = self.state.last_seen - cfg.allowed_lateness_seconds
        pending = self.pending
        drop = 0
        while drop < len(pending) and pending[drop][0].timestamp < horizon:
            drop += 1
        if drop:
            del pending[:drop]

    def expired(self, now: float, cfg: UserStateConfig) -> bool:
        last = self.state.last_seen
        return last is not None and now - last > cfg.ttl_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.to_dict(),
            "pending": [[e.to_dict(), before, evicted] for e, (before, evicted) in self.pending],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], cfg: UserStateConfig) -> UserStream:
        pending: list[tuple[BehaviourEvent, Undo]] = []
        for event, before, evicted in raw["pending"]:
            record: Undo = (
                (before[0], before[1], before[2], int(before[3]), float(before[4])),
                None if evicted is None else (str(evicted[0]), str(evicted[1]), float(evicted[2])),
            )
            pending.append((BehaviourEvent.from_dict(event), record))
        return cls(UserState.from_dict(raw["state"]), pending)
