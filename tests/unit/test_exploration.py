"""Explorers and deterministic sampling."""

from __future__ import annotations

import numpy as np
import pytest

from recloop.core.errors import InvalidInputError
from recloop.exploration import (
    EpsilonGreedy,
    Greedy,
    Softmax,
    make_explorer,
    sample_index,
    uniform_from_event,
)


def test_epsilon_greedy_distribution() -> None:
    probs = EpsilonGreedy(0.2).distribution(np.array([0.1, 0.9, 0.3, 0.2]))
    assert probs == pytest.approx([0.05, 0.85, 0.05, 0.05])


def test_greedy_breaks_ties_towards_first_action() -> None:
    assert list(Greedy().distribution(np.array([1.0, 1.0, 0.0]))) == [1.0, 0.0, 0.0]


def test_softmax_is_normalised_and_ordered() -> None:
    probs = Softmax(2.0).distribution(np.array([0.0, 1.0, 2.0]))
    assert probs.sum() == pytest.approx(1.0)
    assert probs[0] < probs[1] < probs[2]
    e = np.exp([0.0, 2.0, 4.0])
    assert probs == pytest.approx(e / e.sum())


def test_softmax_survives_huge_scores() -> None:
    probs = Softmax(1.0).distribution(np.array([1e308, -1e308, 0.0]))
    assert np.isfinite(probs).all() and probs[0] == pytest.approx(1.0)


def test_unknown_explorer_and_bad_epsilon_are_rejected() -> None:
    with pytest.raises(InvalidInputError):
        make_explorer("thompson")
    with pytest.raises(InvalidInputError):
        EpsilonGreedy(1.5)


def test_sampling_is_deterministic_per_event_and_seed() -> None:
    assert uniform_from_event("e-1", 0) == uniform_from_event("e-1", 0)
    assert uniform_from_event("e-1", 0) != uniform_from_event("e-1", 1)
    assert uniform_from_event("e-1", 0) != uniform_from_event("e-2", 0)


def test_sampling_matches_distribution() -> None:
    probs = np.array([0.7, 0.2, 0.1])
    counts = np.zeros(3)
    for i in range(20_000):
        counts[sample_index(probs, uniform_from_event(f"ev{i}", 42))] += 1
    assert counts / counts.sum() == pytest.approx(probs, abs=0.015)


def test_sampling_never_picks_zero_probability() -> None:
    probs = np.array([0.0, 1.0, 0.0])
    for u in (0.0, 0.5, 0.999999):
        assert sample_index(probs, u) == 1
