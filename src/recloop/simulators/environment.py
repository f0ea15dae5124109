"""One interface for the interactive simulators agents learn in online.

An episode is a stream of requests: a user arrives (with what a recommender could observe
about them and the moment), a set of candidate items comes with it, the agent answers with
a ranking, and the user's feedback on the shown slate comes back (clicks, purchases) with
the next request, or the end of the episode. What drives the user (tastes, return
behaviour) stays inside the environment: agents learn only from what they observe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


class RandomRanker:
    """The baseline: a uniformly random order, seeded."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def rank(self, request: Request) -> list[int]:
        out: list[int] = self.rng.permutation(len(request.candidates)).tolist()
        return out

    def observe(self, feedback: Feedback) -> None:
        """Learns nothing."""


def check_ranking(ranking: Sequence[int], slate_size: int) -> list[int]:
    """The positions of an answer, refused unless there are at least ``slate_size``
    distinct ones (every environment's ``step`` checks its input so)."""
    order = [int(i) for i in ranking]
    if len(order) < slate_size or len(set(order)) != len(order):
        raise ValueError(f"rank at least {slate_size} distinct candidate positions")
    return order


StepHook = Callable[[Request, Feedback], None]
"""(the request answered, the feedback on it) -> None, after each step of :func:`play`."""


def play(
    env: Environment, ranker: Ranker, seed: int, on_step: StepHook | None = None
) -> tuple[int, float]:
    """Run one episode (learning rankers learn as they go); returns (requests answered,
    time of the last one). The environment keeps the episode's totals; ``on_step`` sees
    every request and its feedback."""
    request: Request | None = env.reset(seed)
    answered, last = 0, 0.0
    while request is not None:
        feedback, request_next = env.step(ranker.rank(request))
        ranker.observe(feedback)
        if on_step is not None:
            on_step(request, feedback)
        answered, last = answered + 1, request.time
        request = request_next
    return answered, last
