"""The interface between a ranker that learns online and the world it acts in: a request
(a user, the moment, candidate items), the ranker's answer, the user's feedback.

In ``core`` because both sides use it: the agents (``recloop.agents``) learn from requests
and feedback, the simulators (``recloop.simulators``) make them; neither imports the other
for it (``.importlinter``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Request:
    user: int
    """Index of the user (stable across the episode)."""
    time: float
    """Seconds since the episode began."""
    user_features: Floats
    """(du,) what the system knows of the user now (recent interests, activeness, recency)."""
    context: Floats
    """(dc,) features of the moment (time of day)."""
    candidates: Ints
    """(m,) item indices to choose from."""
    item_features: Floats
    """(m, di) features of each candidate."""
    cross_features: Floats
    """(m, dx) user-item interaction features: this user's history with each candidate's
    kind (e.g. their share of clicks in its category)."""


@dataclass(frozen=True, slots=True)
class Feedback:
    shown: Ints
    """(k,) the items shown, best slot first."""
    clicks: Floats
    """(k,) 1 where the user clicked that slot."""
    purchases: Floats
    """(k,) 1 where a click led to a purchase."""
    reward: float
    """The environment's reward for the request (its own definition: clicks, or a mix)."""
    observations: Mapping[str, Floats] = field(default_factory=dict)
    """Whatever else the environment reveals per shown slot, by name, each (k,) like
    ``clicks`` (RecSim: ``quality``, ``cluster``, ``watch_time``): what a recommender's log
    would hold of the responses, for rankers that read more than clicks."""
    ends_session: bool = False
    """True when the user's session ended with this answer (they leave; a later request of
    theirs, if any, starts a new session): learners close their pending transitions."""


class Environment(Protocol):
    slate_size: int

    def reset(self, seed: int) -> Request:
        """Start a new episode (seeded: the same seed and answers give the same episode)."""
        ...

    def step(self, ranking: Sequence[int]) -> tuple[Feedback, Request | None]:
        """Answer the current request with positions into its ``candidates``, best first
        (at least ``slate_size`` of them); the feedback and the next request, or None when
        the episode is over."""
        ...


class Ranker(Protocol):
    """Anything that answers requests; ``observe`` gets the feedback on each answer."""

    def rank(self, request: Request) -> list[int]: ...

    def observe(self, feedback: Feedback) -> None: ...
