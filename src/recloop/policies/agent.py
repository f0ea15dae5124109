"""Saved deep RL agents as policies, without importing torch until one is actually used.

An agent checkpoint (``recloop train``'s agent.zip, see ``recloop.agents.checkpoint``) can be
a loop's served model (a version in its model store, told from VW models by its contents)
or a candidate policy (kind ``agent`` with ``params.path``). Either way it is a ``Policy``
like any other: scored, explored, logged and evaluated with no special case.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.core.protocols import Policy

if TYPE_CHECKING:
    from recloop.features.vw_text import VWText


DRN_MAGIC = b"recloop-drn/"
"""How a DRN version of a loop (``recloop.agents.drn_loop``) begins, its format number next."""


def is_agent_checkpoint(blob: bytes) -> bool:
    """Cheap test that tells agents from other models (VW) in a model store."""
    if not blob.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            return "meta.json" in z.namelist()
    except zipfile.BadZipFile:
        return False


def agent_policy_from_bytes(blob: bytes, version: str, name: str | None = None) -> Policy:
    """Load and check a checkpoint; a bad one raises ``ModelRejectedError``."""
    try:
        from recloop.agents.policy import AgentPolicy
    except ImportError as exc:  # torch is an optional dependency of serving
        raise ModelRejectedError(
            f"serving a deep RL agent needs PyTorch (pip install 'recloop[rl]'): {exc}"
        ) from exc
    return AgentPolicy.from_bytes(blob, version=version, name=name)


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


def load_model_policy(blob: bytes, version: str, text: VWText | None = None) -> Policy:
    """A model version (or model file) as a policy: a saved deep RL agent, else a VW model
    (``text`` shares VW's action-line cache between versions)."""
    if is_agent_checkpoint(blob):
        return agent_policy_from_bytes(blob, version)
    if blob.startswith(DRN_MAGIC):
        from recloop.agents.drn_loop import DRNPolicy

        return DRNPolicy.from_bytes(blob, version)
    from recloop.policies.vw import VWPolicy

    return VWPolicy.from_bytes(blob, version, text=text)
