"""Explorers turn policy scores into probabilities; sampling is seeded per event."""

from recloop.exploration.explorers import (
    EpsilonGreedy,
    Greedy,
    Softmax,
    make_explorer,
)
from recloop.exploration.sampling import sample_index, uniform_from_event

__all__ = [
    "EpsilonGreedy",
    "Greedy",
    "Softmax",
    "make_explorer",
    "sample_index",
    "uniform_from_event",
]
