"""The deep RL algorithms by name, as ``recloop train --algo`` spells them: explicit, no
discovery. Each entry builds an agent from its hyperparameter dataclass, with overrides
checked against the dataclass's fields (a misspelt name is an error, not ignored)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from recloop.agents.base import Agent
from recloop.agents.bc import BCConfig, BehaviourCloning
from recloop.agents.bcq import BCQ, BCQConfig
from recloop.agents.ddpg import DDPG, DDPGConfig
from recloop.agents.embeddings import Embeddings
from recloop.agents.reinforce_topk import ReinforceTopK, ReinforceTopKConfig
from recloop.core.errors import InvalidInputError

AgentFactory = Callable[[int, int, Any, Embeddings | None], Agent]


@dataclasses.dataclass(frozen=True)
class AgentKind:
    config: type[Any]
    build: AgentFactory
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Hyperparameters this kind pins (plain REINFORCE is REINFORCE-top-K uncorrected)."""
    summary: str = ""


AGENTS: dict[str, AgentKind] = {
    "reinforce-topk": AgentKind(
        ReinforceTopKConfig,
        ReinforceTopK,
        {"correction": True},
        "REINFORCE with top-K off-policy correction (Chen et al. 2019)",
    ),
    "reinforce": AgentKind(
        ReinforceTopKConfig,
        ReinforceTopK,
        {"correction": False},
        "plain REINFORCE on logged returns (no correction): a baseline",
    ),
    "ddpg": AgentKind(DDPGConfig, DDPG, {}, "DDPG (TD3+BC) acting in item-embedding space"),
    "bcq": AgentKind(BCQConfig, BCQ, {}, "batch-constrained deep Q-learning (Fujimoto 2019)"),
    "bc": AgentKind(BCConfig, BehaviourCloning, {}, "behaviour cloning: next engaged item"),
}


def make_config(algo: str, params: Mapping[str, Any] | None = None) -> Any:
    """The algorithm's hyperparameter dataclass with ``params`` applied (names checked)."""
    kind = agent_kind(algo)
    names = {f.name for f in dataclasses.fields(kind.config)}
    params = dict(params or {})
    unknown = sorted(set(params) - names)
    if unknown:
        raise InvalidInputError(
            f"{algo} has no hyperparameter(s) {unknown}; it has {sorted(names)}"
        )
    pinned = {k: v for k, v in params.items() if k in kind.fixed and v != kind.fixed[k]}
    if pinned:
        raise InvalidInputError(f"{algo} fixes {dict(kind.fixed)}; got {pinned}")
    defaults = kind.config()
    for name, value in params.items():
        default = getattr(defaults, name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise InvalidInputError(f"{algo}.{name} must be true or false, got {value!r}")
        is_number = isinstance(default, int | float) and not isinstance(default, bool)
        if is_number and (not numeric or (isinstance(default, int) and not isinstance(value, int))):
            want = "an integer" if isinstance(default, int) else "a number"
            raise InvalidInputError(f"{algo}.{name} must be {want}, got {value!r}")
    try:
        return kind.config(**{**params, **kind.fixed})
    except TypeError as exc:
        raise InvalidInputError(f"{algo} hyperparameters: {exc}") from exc


def make_agent(
    algo: str,
    n_users: int,
    n_items: int,
    params: Mapping[str, Any] | None = None,
    embeddings: Embeddings | None = None,
) -> Agent:
    agent = agent_kind(algo).build(n_users, n_items, make_config(algo, params), embeddings)
    agent.algo = algo
    return agent


def agent_kind(algo: str) -> AgentKind:
    try:
        return AGENTS[algo]
    except KeyError:
        raise InvalidInputError(f"unknown algorithm {algo!r}; known: {sorted(AGENTS)}") from None
