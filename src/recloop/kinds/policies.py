"""The policy kinds that can be named in settings, registered as candidates or given to
``--policy``: the simple ones, a VW learner, and a saved deep RL agent."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recloop.core.errors import InvalidInputError, ModelRejectedError, UnknownPolicyKindError
from recloop.core.protocols import Policy
from recloop.kinds.models import agent_policy_from_bytes, load_model_policy
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


def agent_policy(params: Mapping[str, Any]) -> Policy:
    """The ``agent`` policy kind: ``{"path": "runs/ddpg-seed0/agent.zip"}``."""
    path = params.get("path")
    if not isinstance(path, str) or not path:
        raise InvalidInputError("an 'agent' policy needs params.path (a saved agent.zip)")
    file = Path(path)
    if file.is_dir():
        file = file / "agent.zip"
    if not file.is_file():
        raise InvalidInputError(f"an 'agent' policy: no saved agent at {file}")
    try:
        return agent_policy_from_bytes(file.read_bytes(), version=file.name)
    except ModelRejectedError as exc:
        raise InvalidInputError(f"an 'agent' policy: {exc}") from exc


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
        raise UnknownPolicyKindError(
            f"unknown policy kind {kind!r}; known kinds: {sorted(POLICIES)}"
        ) from None
    return factory(params or {})


def load_policy(name_or_model: str) -> Policy:
    """A registered policy kind, optionally with JSON params (``fixed:{"action_id": "a"}``),
    or a model file saved by recloop (a VW model, a DRN version, a saved agent)."""
    kind, _, params = name_or_model.partition(":")
    if kind in POLICIES:
        try:
            parsed = json.loads(params) if params else {}
        except ValueError as exc:
            raise InvalidInputError(f"--policy {kind}:PARAMS needs JSON params ({exc})") from exc
        if not isinstance(parsed, dict):
            raise InvalidInputError(f"--policy {kind}:PARAMS needs a JSON object")
        return make_policy(kind, parsed)
    path = Path(name_or_model)
    if not path.exists():
        raise InvalidInputError(
            f"--policy {name_or_model!r} is neither a policy kind ({', '.join(POLICIES)}) "
            "nor a model file"
        )
    try:
        return load_model_policy(path.read_bytes(), version=path.name)
    except Exception as exc:
        raise InvalidInputError(f"{path}: not a loadable VW model or agent ({exc})") from exc
