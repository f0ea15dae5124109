"""The policy a loop's ranks are scored with, shared by the part that decides (reads it
once per rank) and the part that serves models (swaps it)."""

from __future__ import annotations

from dataclasses import dataclass

from recloop.core.protocols import Policy


@dataclass(frozen=True, slots=True)
class Served:
    """A policy and the label logged with its decisions, swapped as one: a rank never
    logs one model's label beside another's scores."""

    policy: Policy
    label: str


class PolicySlot:
    def __init__(self, policy: Policy, label: str) -> None:
        self.current = Served(policy, label)

    def serve(self, policy: Policy, label: str) -> None:
        self.current = Served(policy, label)
