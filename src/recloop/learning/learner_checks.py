"""Checks around the online learner: what it may learn from, and whether what it became
can be served. Pure functions of the learner, the example and the settings, so the
pipeline's steps read as the order of things and these as the rules.
"""

from __future__ import annotations

import math

import numpy as np

from recloop.core.protocols import OnlineLearner
from recloop.core.stats import LoopStats
from recloop.core.types import JoinedExample, available_actions
from recloop.policies.vw import PROBE_ACTIONS, PROBE_CONTEXT
from recloop.settings import LoopSettings


def reward_in_range(example: JoinedExample, settings: LoopSettings) -> bool:
    """Whether a joined reward lies in the loop's range (summed rewards: n times it).
    The door refuses out-of-range rewards; this keeps one logged before the range was
    enforced, or under a wider one, from poisoning the learner again on a relearn."""
    span = max(example.n_rewards, 1) if settings.reward_aggregation == "sum" else 1
    low, high = settings.reward_min * span, settings.reward_max * span
    return math.isfinite(example.reward) and low <= example.reward <= high


def record_imitation(learner: OnlineLearner, example: JoinedExample, stats: LoopStats) -> None:
    """Apprentice mode, before learning from a baseline decision: would the learner have
    chosen the same? Counted with the rewards (see ``Loop.apprentice_report``)."""
    d = example.decision
    acts = available_actions(d.actions, d.excluded)
    greedy = acts[int(np.argmax(learner.scores(d.context, acts)))].id
    r = example.reward
    stats.inc("apprentice_events_total")
    stats.inc("apprentice_rewards_total", r)
    stats.inc("apprentice_rewards_sq_total", r * r)
    if greedy == d.chosen:
        stats.inc("apprentice_imitated_total")
        stats.inc("apprentice_imitated_rewards_total", r)
        stats.inc("apprentice_imitated_rewards_sq_total", r * r)


def diverged(learner: OnlineLearner) -> bool:
    """Whether the learner now predicts non-finite scores (a version that every server
    would reject). Probed with the model-store's own probe example."""
    try:
        scores = learner.scores(PROBE_CONTEXT, PROBE_ACTIONS)
    except Exception:  # a learner that cannot score the probe is not judged by it
        return False
    return not bool(np.all(np.isfinite(scores)))
