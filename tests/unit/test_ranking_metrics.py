"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recloop.evaluation.ranking import (
    coverage,
    evaluate_ranking,
    hit_at_k,
    intra_list_similarity,
    ndcg_at_k,
    precision_at_k,
)

RANKED = np.array([[3, 1, 2], [0, 2, 4], [4, 0, 1]])


def test_single_next_item():
    nxt = np.array([1, 5, 4])  # hit at rank 2, miss, hit at rank 1
    np.testing.assert_allclose(hit_at_k(RANKED, nxt), [1, 0, 1])
    np.testing.assert_allclose(precision_at_k(RANKED, nxt), [1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(ndcg_at_k(RANKED, nxt), [1 / math.log2(3), 0, 1])


def test_sets_of_relevant_items():
    rel = [{3, 2}, {9}, {4, 0, 1, 7}]
    # row 0: hits at ranks 1 and 3 -> (1 + 1/2) / (1 + 1/log2 3)
    expected0 = (1 + 0.5) / (1 + 1 / math.log2(3))
    np.testing.assert_allclose(ndcg_at_k(RANKED, rel), [expected0, 0.0, 1.0])
    np.testing.assert_allclose(precision_at_k(RANKED, rel), [2 / 3, 0, 1])


def test_coverage_and_diversity():
    assert coverage(RANKED, n_items=10) == pytest.approx(5 / 10)
    same = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    ils = intra_list_similarity(np.array([[0, 1], [0, 2]]), same)
    np.testing.assert_allclose(ils, [1.0, 0.0])


def test_report_intervals():
    rng = np.random.default_rng(0)
    ranked = rng.integers(0, 50, size=(500, 10))
    nxt = rng.integers(0, 50, size=500)
    rep = evaluate_ranking(ranked, nxt, 50)
    assert rep.n == 500 and rep.hit.low < rep.hit.value < rep.hit.high
    assert 0.1 < rep.hit.value < 0.3  # ~10 of 50 items (with repeats in a row)
