"""The loop's online learner, by its settings: Vowpal Wabbit (the default) or DRN.

DRN is imported only when a loop asks for it, so loops on VW never load PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from recloop.core.arrays import FloatArray
from recloop.core.protocols import Learner
from recloop.core.types import Action, Context
from recloop.policies.vw import VWLearner
from recloop.settings import LoopSettings


class OnlineLearner(Learner, Protocol):
    kind: str
    """Written into each version's metadata: a learner resumes only from its own kind."""
    examples_learned: int

    @property
    def args(self) -> str: ...

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        """What the learner would score now (apprentice mode's imitation check)."""
        ...

    def close(self) -> None: ...


def learner_kind(settings: LoopSettings) -> str:
    return "drn" if settings.learner == "drn" else VWLearner.kind


def new_learner(settings: LoopSettings) -> OnlineLearner:
    if settings.learner == "drn":
        from recloop.agents.drn_loop import DRNLearner, DRNSpec

        return DRNLearner(DRNSpec.from_params(settings.drn, settings.seed))
    return VWLearner(settings.full_vw_args())


def resume_learner(settings: LoopSettings, blob: bytes) -> OnlineLearner:
    """From a version this kind of learner wrote; ModelRejectedError if it cannot."""
    if settings.learner == "drn":
        from recloop.agents.drn_loop import DRNLearner

        return DRNLearner.from_bytes(blob, settings.drn, settings.seed)
    return VWLearner.from_bytes(blob, settings.full_vw_args())
