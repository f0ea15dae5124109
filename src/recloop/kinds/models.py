"""The one registry of model kinds: what a loop can serve from its model store and learn.

Each kind says how to recognise a stored blob, load it as a ``Policy``, and, if the loop
can learn it online, how to check its parameters, start a learner and resume one. The
loop (serving and reset), the pipeline, the stream's ``loop:NAME`` policy, model imports
and ``recloop estimate-offline --policy FILE`` all ask here, so adding a kind touches
this file (and the kind's own module). Agent code is imported only when its kind is
used: a loop on VW never loads PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recloop.agents.formats import is_agent_checkpoint, is_drn_version, is_fusion_version
from recloop.core.errors import ModelRejectedError
from recloop.core.protocols import OnlineLearner, Policy
from recloop.features.vw_text import VWText
from recloop.policies.vw import VWLearner, VWPolicy
from recloop.settings import LoopSettings


@dataclass(frozen=True)
class LearnerKind:
    """How a loop learns a kind online (``learner = "..."`` in its settings)."""

    meta_kind: str
    """Written into each version's metadata: a learner resumes only from its own kind."""
    check: Callable[[LoopSettings], None]
    """Refuse bad parameters before the loop opens a file (``InvalidInputError``)."""
    new: Callable[[LoopSettings], OnlineLearner]
    resume: Callable[[LoopSettings, bytes], OnlineLearner]
    """From a version this kind wrote; ``ModelRejectedError`` if it cannot."""
    fingerprint: Callable[[LoopSettings], str | None]
    """What must be unchanged to resume from a version (VW: its arguments); None when the
    kind decides in ``resume``. A new fingerprint at run time starts the learner afresh."""


@dataclass(frozen=True)
class ModelKind:
    name: str
    recognises: Callable[[bytes], bool]
    load: Callable[[bytes, str, VWText | None], Policy]
    """A stored blob as a served policy (``text`` shares VW's action-line cache between
    versions); ``ModelRejectedError`` for a bad one."""
    learner: LearnerKind | None = None
    """None for kinds that are served but not learned by the loop (saved agents)."""


def _load_agent(blob: bytes, version: str, _text: VWText | None) -> Policy:
    return agent_policy_from_bytes(blob, version)


def agent_policy_from_bytes(blob: bytes, version: str, name: str | None = None) -> Policy:
    """A saved deep RL agent, loaded and checked (``ModelRejectedError`` if bad)."""
    try:
        from recloop.agents.policy import AgentPolicy
    except ImportError as exc:  # torch is an optional dependency of serving
        raise ModelRejectedError(
            f"serving a deep RL agent needs PyTorch (pip install 'recloop[rl]'): {exc}"
        ) from exc
    return AgentPolicy.from_bytes(blob, version=version, name=name)


def _load_drn(blob: bytes, version: str, _text: VWText | None) -> Policy:
    from recloop.agents.drn_loop import DRNPolicy

    return DRNPolicy.from_bytes(blob, version)


def _check_drn(settings: LoopSettings) -> None:
    from recloop.agents.drn_loop import DRNSpec

    DRNSpec.from_params(settings.drn, settings.seed)


def _new_drn(settings: LoopSettings) -> OnlineLearner:
    from recloop.agents.drn_loop import DRNLearner, DRNSpec

    return DRNLearner(DRNSpec.from_params(settings.drn, settings.seed))


def _resume_drn(settings: LoopSettings, blob: bytes) -> OnlineLearner:
    from recloop.agents.drn_loop import DRNLearner

    return DRNLearner.from_bytes(blob, settings.drn, settings.seed)


def _load_fusion(blob: bytes, version: str, _text: VWText | None) -> Policy:
    from recloop.agents.fusion_loop import FusionPolicy

    return FusionPolicy.from_bytes(blob, version)


def _check_fusion(settings: LoopSettings) -> None:
    from recloop.agents.fusion_loop import FusionSpec

    FusionSpec.from_params(settings.fusion, settings.seed)


def _new_fusion(settings: LoopSettings) -> OnlineLearner:
    from recloop.agents.fusion_loop import FusionLearner, FusionSpec

    return FusionLearner(FusionSpec.from_params(settings.fusion, settings.seed))


def _resume_fusion(settings: LoopSettings, blob: bytes) -> OnlineLearner:
    from recloop.agents.fusion_loop import FusionLearner

    return FusionLearner.from_bytes(blob, settings.fusion, settings.seed)


def _load_vw(blob: bytes, version: str, text: VWText | None) -> Policy:
    return VWPolicy.from_bytes(blob, version, text=text)


def _nothing_to_check(_settings: LoopSettings) -> None:
    """VW's arguments are checked with the settings themselves (``LoopSettings``)."""


MODEL_KINDS: dict[str, ModelKind] = {
    "agent": ModelKind("agent", is_agent_checkpoint, _load_agent),
    "drn": ModelKind(
        "drn",
        is_drn_version,
        _load_drn,
        LearnerKind("drn", _check_drn, _new_drn, _resume_drn, lambda _: None),
    ),
    "fusion": ModelKind(
        "fusion",
        is_fusion_version,
        _load_fusion,
        LearnerKind("fusion", _check_fusion, _new_fusion, _resume_fusion, lambda _: None),
    ),
    "vw": ModelKind(
        "vw",
        lambda _: True,  # VW's own format has no magic: whatever no other kind claims
        _load_vw,
        LearnerKind(
            VWLearner.kind,
            _nothing_to_check,
            lambda s: VWLearner(s.full_vw_args()),
            lambda s, blob: VWLearner.from_bytes(blob, s.full_vw_args()),
            lambda s: s.full_vw_args(),
        ),
    ),
}
"""In the order blobs are tested: the first kind that recognises one loads it."""


def kind_of(blob: bytes) -> ModelKind:
    return next(kind for kind in MODEL_KINDS.values() if kind.recognises(blob))


def load_model_policy(blob: bytes, version: str, text: VWText | None = None) -> Policy:
    """A model version (or model file) as a policy, whatever its kind."""
    return kind_of(blob).load(blob, version, text)


def learner_kind(settings: LoopSettings) -> LearnerKind:
    """The kind a loop with these settings learns."""
    learner = MODEL_KINDS[settings.learner].learner
    if learner is None:  # settings only name kinds that learn; a registry slip, not input
        raise ValueError(f"model kind {settings.learner!r} is not learned online")
    return learner
