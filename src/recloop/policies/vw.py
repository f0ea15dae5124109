"""Vowpal Wabbit contextual bandit: a serving policy and an online learner.

The model is VW's ``--cb_adf`` reduction (the learner that ``--cb_explore_adf`` wraps): it
predicts a cost per action, which we negate into scores. Exploration is done by recloop's
Explorer, not inside VW, so that every policy -- bandit or deep RL -- is explored and
logged the same way, and the logged probability is computed in one place.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence

import numpy as np
import pylibvw  # type: ignore[import-not-found]  # VW's C extension, shipped with vowpalwabbit
import vowpalwabbit

from recloop.core.arrays import FloatArray
from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.core.types import Action, Context, JoinedExample, available_actions
from recloop.features.vw_text import VWText, adf_example
from recloop.policies.vw_args import allowed_vw_args, check_model_header

DEFAULT_VW_ARGS = "--cb_adf --cb_type mtr -l 0.05 --clip_p 0.1 -q CA"
"""A vw-cb candidate's arguments when none are given: the loop learner's default (see the
vw_args setting) with its default interaction."""

PROBE_CONTEXT = {"probe": 1.0}
PROBE_ACTIONS = (Action("a", {"x": 1.0}), Action("b", {"y": 1.0}))
"""A tiny request every usable model must score finitely (loading a version, and the
pipeline's check that its learner has not diverged)."""
_PROBE = adf_example(PROBE_CONTEXT, list(PROBE_ACTIONS))


def _fast_path_available() -> bool:
    return all(
        hasattr(pylibvw.vw, name)
        for name in ("predict_multi", "learn_multi", "_finish_example_multi_ex")
    )


_FAST = _fast_path_available()


def predict_costs(ws: vowpalwabbit.Workspace, lines: list[str]) -> list[float]:
    """Predicted cost per action, in action order.

    Calls VW's extension directly: ``Workspace.predict`` wraps every line in a Python
    ``Example`` object, which costs three times the prediction itself (README,
    "Measurements behind the code"). Falls back to the public API if the extension changes.
    """
    if not _FAST:
        return list(ws.predict(lines))
    examples = ws._parse("\n".join(lines))
    try:
        pylibvw.vw.predict_multi(ws, examples)
        return list(examples[0].get_action_scores())
    finally:
        pylibvw.vw._finish_example_multi_ex(ws, examples)


def learn_lines(ws: vowpalwabbit.Workspace, lines: list[str]) -> None:
    """Learn one labelled multi-line example (the same fast path as predict_costs)."""
    if not _FAST:
        ws.learn(lines)
        return
    examples = ws._parse("\n".join(lines))
    try:
        pylibvw.vw.learn_multi(ws, examples)
    finally:
        pylibvw.vw._finish_example_multi_ex(ws, examples)


def _workspace(args: str) -> vowpalwabbit.Workspace:
    """A fresh learner. Whoever passes ``args`` (a setting, a request, code), they pass the
    allow-list here too: VW writes files and opens ports while it parses its arguments."""
    clean = allowed_vw_args(args)
    try:
        return vowpalwabbit.Workspace(f"{clean} --quiet")
    except Exception as exc:  # VW raises plain RuntimeError/ValueError on bad arguments
        raise InvalidInputError(f"Vowpal Wabbit rejected the arguments {args!r}: {exc}") from exc


def _check_adf(ws: vowpalwabbit.Workspace) -> None:
    """Reject models that are not action-scoring ADF models."""
    prediction = ws.predict(_PROBE)
    if (
        not isinstance(prediction, list)
        or len(prediction) != 2
        or ws.get_prediction_type() != (vowpalwabbit.Workspace.pACTION_SCORES)
    ):
        raise ModelRejectedError(
            "model is not a contextual-bandit ADF model (expected one score per action)"
        )
    if not all(np.isfinite(prediction)):
        raise ModelRejectedError("model predicts non-finite scores")


def workspace_from_bytes(blob: bytes) -> vowpalwabbit.Workspace:
    """Load a saved VW model, checking it is usable; raises ModelRejectedError if not.

    A model file holds options that VW acts on as it loads it, and model files come from
    requests: its header passes the allow-list first. No other arguments are passed: any text
    added here would be parsed by VW as options too (see :mod:`recloop.policies.vw_args`)."""
    check_model_header(blob)
    fd, path = tempfile.mkstemp(suffix=".vw")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        try:
            ws = vowpalwabbit.Workspace(f"--quiet -i {path}")
        except Exception as exc:
            raise ModelRejectedError(f"model could not be loaded by Vowpal Wabbit: {exc}") from exc
    finally:
        os.unlink(path)
    try:
        _check_adf(ws)
    except ModelRejectedError:
        ws.finish()
        raise
    except Exception as exc:
        ws.finish()
        raise ModelRejectedError(f"model failed a probe prediction: {exc}") from exc
    return ws


def workspace_to_bytes(ws: vowpalwabbit.Workspace) -> bytes:
    fd, path = tempfile.mkstemp(suffix=".vw")
    os.close(fd)
    try:
        ws.save(path)
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        os.unlink(path)


class VWPolicy:
    """Serves a VW model: scores = -predicted cost. Thread-safe (VW is not)."""

    def __init__(
        self,
        ws: vowpalwabbit.Workspace,
        version: str,
        name: str = "vw-cb",
        text: VWText | None = None,
    ) -> None:
        self._ws = ws
        self._lock = threading.Lock()
        self._text = text if text is not None else VWText()
        self.version = version
        self.name = name

    @classmethod
    def from_bytes(
        cls, blob: bytes, version: str, name: str = "vw-cb", text: VWText | None = None
    ) -> VWPolicy:
        """Load a model; pass the loop's VWText so its cache survives model swaps."""
        return cls(workspace_from_bytes(blob), version, name, text)

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        lines = self._text.example(context, actions)
        with self._lock:
            costs = predict_costs(self._ws, lines)
        return -np.asarray(costs, dtype=float)

    def close(self) -> None:
        with self._lock:
            self._ws.finish()


class VWLearner:
    """Online learner: one joined example at a time, cost = -reward (VW minimises cost).

    Also a Policy, so a VW configuration can be a candidate policy evaluated off-policy.
    """

    kind = "vw-cb"

    def __init__(
        self,
        args: str = DEFAULT_VW_ARGS,
        ws: vowpalwabbit.Workspace | None = None,
        name: str = "vw-cb",
    ) -> None:
        self.args = args
        self._ws = ws if ws is not None else _workspace(args)
        self._lock = threading.Lock()
        self._text = VWText()
        self.examples_learned = 0
        self.name = name
        self.version = "online"

    @classmethod
    def from_bytes(cls, blob: bytes, args: str = DEFAULT_VW_ARGS) -> VWLearner:
        return cls(args, workspace_from_bytes(blob))

    def learn_one(self, example: JoinedExample) -> None:
        d = example.decision
        acts = available_actions(d.actions, d.excluded)
        index = next(i for i, a in enumerate(acts) if a.id == d.chosen)
        lines = self._text.labelled(d.context, acts, index, -example.reward, d.probability)
        with self._lock:
            learn_lines(self._ws, lines)
        self.examples_learned += 1

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        with self._lock:
            costs = predict_costs(self._ws, self._text.example(context, actions))
        return -np.asarray(costs, dtype=float)

    def snapshot(self) -> bytes:
        with self._lock:
            return workspace_to_bytes(self._ws)

    def close(self) -> None:
        with self._lock:
            self._ws.finish()
