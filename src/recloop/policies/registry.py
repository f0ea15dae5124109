"""Explicit registry of policy kinds that can be named in config or registered as candidates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from recloop.core.errors import InvalidInputError, UnknownPolicyError
from recloop.core.protocols import Policy
from recloop.policies.agent import agent_policy
from recloop.policies.simple import FirstAction, FixedAction, MostPopular, Uniform
from recloop.policies.vw import DEFAULT_VW_ARGS, VWLearner
from recloop.policies.vw_args import check_learner_args


def _fixed(params: Mapping[str, Any]) -> Policy:
    action_id = params.get("action_id")
    if not isinstance(action_id, str) or not action_id:
        raise InvalidInputError("a 'fixed' policy needs params.action_id (a string)")
    return FixedAction(action_id)


def _vw(params: Mapping[str, Any]) -> Policy:
    """``params.args`` come from requests: only learning options, checked before VW sees
    them (VW writes files and opens ports while it parses its arguments)."""
    args = params.get("args", DEFAULT_VW_ARGS)
    if not isinstance(args, str):
        raise InvalidInputError("a 'vw-cb' policy needs params.args, VW arguments with --cb_adf")
    return VWLearner(check_learner_args(args))


POLICIES: dict[str, Callable[[Mapping[str, Any]], Policy]] = {
    "first-action": lambda _: FirstAction(),
    "fixed": _fixed,
    "uniform": lambda _: Uniform(),
    "most-popular": lambda _: MostPopular(),
    "vw-cb": _vw,
    "agent": agent_policy,
}


def make_policy(kind: str, params: Mapping[str, Any] | None = None) -> Policy:
    try:
        factory = POLICIES[kind]
    except KeyError:
        raise UnknownPolicyError(
            f"unknown policy kind {kind!r}; known kinds: {sorted(POLICIES)}"
        ) from None
    return factory(params or {})
