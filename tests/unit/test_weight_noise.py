"""Exploration by Gaussian noise on a score weight: the probability of each candidate
leading is exact (the draws that use the same uniform numbers land on each candidate as
often as it says), sums to 1, and takes ties and the clipped tails as ``argmax`` does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.exploration.weight_noise import WeightNoise, draw, leader_probabilities


def _grid_probabilities(
    b: np.ndarray, m: np.ndarray, mean: float, noise: WeightNoise
) -> np.ndarray:
    """The same probabilities by brute force: the leader at 200,000 evenly spaced quantiles
    of the noise (an independent computation: no envelope, no breakpoints)."""
    n = 200_000
    u = (np.arange(n) + 0.5) / n
    counts = np.zeros(len(b))
    for ui in u:
        counts[draw(b, m, mean, noise, float(ui))[0]] += 1
    return counts / n


@pytest.mark.parametrize(
    ("b", "m", "mean", "noise"),
    [
        # fusion lines from click * (pay + a * phi): three cross inside the range
        ([0.10, 0.06, 0.02, 0.0], [0.00, 0.03, 0.06, 0.01], 1.0, WeightNoise(0.8, 0.0, 4.0)),
        # the mean near a clip: a point mass at low
        ([0.10, 0.06, 0.02], [0.00, 0.03, 0.06], 0.2, WeightNoise(0.5, 0.0, 4.0)),
        # identical lines: the lower index takes all their mass, as argmax does
        ([0.05, 0.05, 0.01], [0.02, 0.02, 0.05], 1.0, WeightNoise(1.0, 0.0, 3.0)),
        # lines tied at a = low (pay 0 everywhere): the tie at the point mass goes to index 0
        ([0.0, 0.0, 0.0], [0.01, 0.03, 0.02], 0.0, WeightNoise(0.3, 0.0, 2.0)),
    ],
)
def test_the_probabilities_are_what_the_draws_do(b, m, mean, noise) -> None:
    b, m = np.array(b), np.array(m)
    exact = leader_probabilities(b, m, mean, noise)
    assert exact.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.abs(exact - _grid_probabilities(b, m, mean, noise)).max() < 2e-5


def test_identical_lines_and_ties_at_the_clip_follow_argmax() -> None:
    same = leader_probabilities(
        np.array([0.05, 0.05]), np.array([0.02, 0.02]), 1.0, WeightNoise(1.0, 0, 3)
    )
    assert same.tolist() == [1.0, 0.0]
    # all start at 0 when a = 0; the mass below 0 (half of it) goes to index 0, the rest to
    # the steepest line
    tied = leader_probabilities(
        np.zeros(3), np.array([0.01, 0.03, 0.02]), 0.0, WeightNoise(0.3, 0, 2)
    )
    assert tied == pytest.approx([0.5, 0.5, 0.0])


def test_without_noise_the_mean_leads_for_certain() -> None:
    b, m = np.array([0.10, 0.06, 0.02]), np.array([0.00, 0.03, 0.06])
    noise = WeightNoise(0.0, 0.0, 4.0)
    assert leader_probabilities(b, m, 3.0, noise).tolist() == [0.0, 0.0, 1.0]
    assert draw(b, m, 3.0, noise, 0.123) == (2, 3.0)
    assert draw(b, m, 9.0, noise, 0.5) == (2, 4.0)  # clipped


@pytest.mark.parametrize(
    "bad",
    [
        dict(sigma=-1.0, low=0, high=1),
        dict(sigma=float("nan"), low=0, high=1),
        dict(sigma=0.1, low=2, high=1),
        dict(sigma=0.1, low=0, high=float("inf")),
    ],
)
def test_bad_noise_is_refused(bad) -> None:
    with pytest.raises(ValueError):
        WeightNoise(**bad)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.floats(-1, 1)), min_size=1, max_size=12),
    st.floats(-1, 5),
    st.floats(0.01, 3),
)
def test_any_lines_give_a_distribution_the_draws_agree_with(lines, mean, sigma) -> None:
    b = np.array([x for x, _ in lines])
    m = np.array([y for _, y in lines])
    noise = WeightNoise(sigma, 0.0, 4.0)
    exact = leader_probabilities(b, m, mean, noise)
    assert (exact >= 0).all() and exact.sum() == pytest.approx(1.0, abs=1e-9)
    u = (np.arange(4000) + 0.5) / 4000
    counts = np.bincount([draw(b, m, mean, noise, float(x))[0] for x in u], minlength=len(b))
    # evenly spaced quantiles: each candidate's share is off by at most one step per
    # interval it leads on (at most one interval per candidate, plus the two tails)
    assert np.abs(counts / 4000 - exact).max() <= (len(b) + 2) / 4000 + 1e-9


def test_the_density_of_a_served_weight_adds_up_to_one_with_the_clipped_bounds() -> None:
    noise, mean = WeightNoise(0.5, 0.0, 4.0), 0.2
    grid = np.linspace(0.0, 4.0, 400_001)[1:-1]
    inside = np.trapezoid([noise.density(mean, float(a)) for a in grid[::100]], grid[::100])
    at_bounds = noise.density(mean, 0.0) + noise.density(mean, 4.0)
    assert inside + at_bounds == pytest.approx(1.0, abs=1e-5)
    assert (
        noise.density(mean, -3.0) == noise.density(mean, 0.0) == pytest.approx(0.3445783, abs=1e-6)
    )
    assert noise.density(mean, mean) == pytest.approx(1 / (0.5 * np.sqrt(2 * np.pi)))
    assert WeightNoise(0.0, 0.0, 4.0).density(1.0, 1.0) == 1.0
