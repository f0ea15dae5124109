"""How the agents' stored formats begin: told apart from other models without torch.

A loop's model store holds VW models, DRN versions and saved deep RL agents side by side;
``recloop.kinds.models`` recognises each by these tests before importing any agent code.
"""

from __future__ import annotations

import io
import zipfile

DRN_MAGIC = b"recloop-drn/"
"""How a DRN version of a loop (``recloop.agents.drn_loop``) begins, its format number next."""


def is_drn_version(blob: bytes) -> bool:
    return blob.startswith(DRN_MAGIC)


def is_agent_checkpoint(blob: bytes) -> bool:
    """A saved agent (``recloop.agents.checkpoint``): a zip with ``meta.json``."""
    if not blob.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            return "meta.json" in z.namelist()
    except zipfile.BadZipFile:
        return False


FUSION_MAGIC = b"recloop-fusion/"
"""How a score-fusion DDPG version of a loop (``recloop.agents.fusion_loop``) begins."""


def is_fusion_version(blob: bytes) -> bool:
    return blob.startswith(FUSION_MAGIC)
