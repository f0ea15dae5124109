"""Play a synthetic population against a loop (in-process or over HTTP) and report learning.

``recloop simulate``'s harness: it drives a ``Loop`` (``recloop.client``) or a server with
``recloop.simulators.synthetic``, so it lives in ``experiments``, above both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from recloop.client import Loop
from recloop.core.clock import FakeClock
from recloop.simulators.synthetic import SyntheticPopulation

CANDIDATES: list[dict[str, Any]] = [
    {"name": "always-politics", "kind": "fixed", "params": {"action_id": "politics"}},
    {"name": "always-sports", "kind": "fixed", "params": {"action_id": "sports"}},
    {"name": "most-popular", "kind": "most-popular", "params": {}},
]


class Target(Protocol):
    """What the simulation talks to: a Loop, or a server over HTTP."""

    def rank(
        self, context: dict[str, Any], actions: list[dict[str, Any]], event_id: str
    ) -> tuple[str, str]: ...

    def reward(self, event_id: str, value: float) -> None: ...

    def register(self, spec: dict[str, Any]) -> None: ...

    def evaluations(self, events: int) -> dict[str, Any]:
        """The evaluators' report once this run's `events` decisions are joined."""
        ...

    def tick(self, i: int) -> None: ...


class LoopTarget:
    """In-process, on a fake clock: `seconds_per_event` of simulated time per decision."""

    def __init__(
        self, loop: Loop, clock: FakeClock, seconds_per_event: float = 0.01, step_every: int = 50
    ) -> None:
        self.loop, self.clock = loop, clock
        self.seconds_per_event, self.step_every = seconds_per_event, step_every

    def rank(
        self, context: dict[str, Any], actions: list[dict[str, Any]], event_id: str
    ) -> tuple[str, str]:
        d = self.loop.rank(context, actions, event_id=event_id)
        return d.event_id, d.chosen

    def reward(self, event_id: str, value: float) -> None:
        self.loop.reward(event_id, value)

    def register(self, spec: dict[str, Any]) -> None:
        self.loop.register_policy(spec["name"], spec["kind"], spec["params"], persist=False)

    def evaluations(self, events: int) -> dict[str, Any]:
        self.clock.advance(self.loop.settings.exp_unit_seconds * 2)
        self.loop.step()
        return self.loop.evaluations()

    def tick(self, i: int) -> None:
        self.clock.advance(self.seconds_per_event)
        if i % self.step_every == 0:
            self.loop.step()


class HttpTarget:
    """A running server; candidates are registered with the server's evaluators."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        loop: str = "default",
        wait_seconds: float = 120.0,
        rate: float | None = None,
    ) -> None:
        """`rate`: events per second (None: as fast as the server answers)."""
        self.rate = rate
        self._start = time.monotonic()
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=10.0)
        self.prefix = "/v1" if loop == "default" else f"/v1/loops/{loop}"
        self.joined_before = self._report()["examples"]
        self.wait_seconds = wait_seconds

    def rank(
        self, context: dict[str, Any], actions: list[dict[str, Any]], event_id: str
    ) -> tuple[str, str]:
        r = self.client.post(
            f"{self.prefix}/rank",
            json={"context": context, "actions": actions, "event_id": event_id},
        )
        r.raise_for_status()
        body = r.json()
        return str(body["event_id"]), str(body["reward_action_id"])

    def reward(self, event_id: str, value: float) -> None:
        self.client.post(
            f"{self.prefix}/events/{event_id}/reward", json={"value": value}
        ).raise_for_status()

    def register(self, spec: dict[str, Any]) -> None:
        self.client.post(f"{self.prefix}/policies", json=spec).raise_for_status()

    def _report(self) -> dict[str, Any]:
        response = self.client.get(f"{self.prefix}/evaluations")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def evaluations(self, events: int) -> dict[str, Any]:
        """Wait (up to wait_seconds) for the server to join this run's decisions."""
        deadline = time.monotonic() + self.wait_seconds
        report = self._report()
        while report["examples"] < self.joined_before + events and time.monotonic() < deadline:
            time.sleep(0.25)
            report = self._report()
        return report

    def tick(self, i: int) -> None:
        if self.rate:
            delay = self._start + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


@dataclass
class SimulationResult:
    events: int
    rewards: float
    windows: list[tuple[int, float]] = field(default_factory=list)
    """(events so far, reward rate in the window)"""
    greedy_hits_late: int = 0
    evaluations: dict[str, Any] = field(default_factory=dict)

    @property
    def reward_rate(self) -> float:
        return self.rewards / self.events if self.events else 0.0


def simulate(
    target: Target,
    population: SyntheticPopulation,
    events: int,
    window: int = 500,
    reward_only_clicks: bool = True,
    progress: Callable[[int], None] | None = None,
    register_candidates: bool = True,
    run_id: str | None = None,
) -> SimulationResult:
    """Run `events` decisions; rewards are sent only for clicks (others get the default).

    Event ids are ``sim-<run_id>-<i>`` so an in-process run is reproducible from its seeds
    (sampling is seeded by event id); pass a fresh run_id for each run against one server.
    """
    run_id = run_id if run_id is not None else f"seed{population.seed}"
    if register_candidates:
        for spec in CANDIDATES:
            target.register(spec)
    actions = population.actions()
    result = SimulationResult(events=events, rewards=0.0)
    in_window = 0.0
    for i in range(1, events + 1):
        context = population.context()
        event_id, chosen = target.rank(context, actions, f"sim-{run_id}-{i}")
        value = population.reward(context, chosen)
        if value or not reward_only_clicks:
            target.reward(event_id, value)
        result.rewards += value
        in_window += value
        if i % window == 0:
            result.windows.append((i, in_window / window))
            in_window = 0.0
        target.tick(i)
        if progress is not None:
            progress(i)
    result.evaluations = target.evaluations(events)
    return result
