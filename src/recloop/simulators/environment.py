"""One interface for the interactive simulators agents learn in online.

An episode is a stream of requests: a user arrives (with what a recommender could observe
about them and the moment), a set of candidate items comes with it, the agent answers with
a ranking, and the user's feedback on the shown slate comes back (clicks, purchases) with
the next request, or the end of the episode. What drives the user (tastes, return
behaviour) stays inside the environment: agents learn only from what they observe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from recloop.core.interaction import (  # the interface, re-exported: simulators' home
    Environment,
    Feedback,
    Floats,
    Ints,
    Ranker,
    Request,
)

__all__ = [
    "Environment",
    "Feedback",
    "Floats",
    "Ints",
    "RandomRanker",
    "Ranker",
    "Request",
    "StepHook",
    "check_ranking",
    "play",
]


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
