"""A recloop decision loop as a simulator :class:`~recloop.simulators.environment.Ranker`.

The whole loop, not a stand-in: every request is a ``Loop.rank`` (the policy scores, the
explorer samples, the decision is logged), the click on the chosen item is its reward, and
the loop's own pipeline joins and trains Vowpal Wabbit and deploys each new model version,
on a fake clock so that a run is reproducible from its seed. Features are the request's
arrays by name: ``u*`` the user, ``c*`` the context (namespace C), ``i*`` the item, ``x*``
the user-item pair (namespace A).

It opens a whole ``Loop`` (``recloop.client``), which a simulator may not import (the
loop is above them), so it lives in ``experiments`` beside the harnesses that use it.
"""

from __future__ import annotations

import tempfile
from typing import Any

from recloop.client import Loop
from recloop.core.clock import FakeClock
from recloop.simulators.environment import Feedback, Floats, Request


def _named(prefix: str, values: Floats) -> dict[str, float]:
    """Non-zero entries only: zeros carry nothing for a linear learner and cost time."""
    return {f"{prefix}{i}": float(v) for i, v in enumerate(values) if v != 0.0}


class LoopRanker:
    """``seconds_per_request`` of simulated time pass per request; the pipeline runs every
    ``step_every`` requests; the rest of ``settings`` are :class:`LoopSettings` fields."""

    def __init__(
        self,
        seed: int,
        seconds_per_request: float = 0.01,
        step_every: int = 50,
        **settings: Any,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="recloop-sim-loop-")
        self.clock = FakeClock()
        options: dict[str, Any] = {"exp_unit_seconds": 1.0, "seed": seed, **settings}
        self.loop = Loop.open(self._dir.name, start=False, clock=self.clock, **options)
        self.seconds_per_request, self.step_every = seconds_per_request, step_every
        self._requests = 0
        self._pending: str | None = None

    def rank(self, request: Request) -> list[int]:
        context = {
            **_named("u", request.user_features),
            **_named("c", request.context),
        }
        actions = [
            {
                "id": str(i),
                "features": {
                    **_named("i", request.item_features[i]),
                    **_named("x", request.cross_features[i]),
                },
            }
            for i in range(len(request.candidates))
        ]
        decision = self.loop.rank(context, actions, event_id=f"sim-{self._requests}")
        self._pending = decision.event_id
        return [int(a) for a in decision.ranking]

    def observe(self, feedback: Feedback) -> None:
        """The chosen item is the first shown: its click is the decision's reward."""
        if self._pending is None:
            raise RuntimeError("observe() before rank()")
        click = float(feedback.clicks[0])
        if click != 0.0:  # no reward in the window means the default reward (0)
            self.loop.reward(self._pending, click)
        self._pending = None
        self._requests += 1
        self.clock.advance(self.seconds_per_request)
        if self._requests % self.step_every == 0:
            self.loop.step()

    @property
    def model_version(self) -> str:
        return self.loop.model_version

    def close(self) -> None:
        self.loop.close()
        self._dir.cleanup()


def ensure_closed(ranker: object) -> None:
    """Release what a ranker holds (a loop's files), for rankers that hold anything."""
    if isinstance(ranker, LoopRanker):
        ranker.close()
