"""Offline ranking metrics of top-K lists against what users went on to engage with.

``ranked`` is an (n, K) array of item indices, best first, one row per evaluated state;
``relevant`` gives, per row, the items that count as hits (the next engaged item, or all
items engaged later in the session). Each metric returns its per-row values so callers can
average them and put confidence intervals on the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recloop.evaluation.terms import Interval, z_value

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]


def _hits(ranked: Ints, relevant: Sequence[set[int]] | Ints) -> NDArray[np.bool_]:
    if isinstance(relevant, np.ndarray):
        out: NDArray[np.bool_] = ranked == relevant[:, None]
        return out
    return np.array(
        [[int(i) in rel for i in row] for row, rel in zip(ranked, relevant, strict=True)]
    )


def hit_at_k(ranked: Ints, relevant: Sequence[set[int]] | Ints) -> Floats:
    out: Floats = np.asarray(_hits(ranked, relevant).any(axis=1), dtype=np.float64)
    return out


def precision_at_k(ranked: Ints, relevant: Sequence[set[int]] | Ints) -> Floats:
    out: Floats = np.asarray(
        _hits(ranked, relevant).sum(axis=1) / ranked.shape[1], dtype=np.float64
    )
    return out


def ndcg_at_k(ranked: Ints, relevant: Sequence[set[int]] | Ints) -> Floats:
    """Binary relevance: DCG = sum 1/log2(rank + 2) over hits, over the ideal DCG."""
    hits = _hits(ranked, relevant).astype(np.float64)
    k = ranked.shape[1]
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = hits @ discount
    if isinstance(relevant, np.ndarray):
        n_rel = np.ones(len(ranked))
    else:
        n_rel = np.array([len(r) for r in relevant], dtype=np.float64)
    ideal = np.array([discount[: int(min(m, k))].sum() for m in n_rel])
    out: Floats = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    return out


def coverage(ranked: Ints, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    return len(np.unique(ranked)) / n_items


def intra_list_similarity(ranked: Ints, item_vectors: Floats) -> Floats:
    """Mean pairwise cosine similarity of the items in each list (lower = more diverse)."""
    v = item_vectors / np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)
    lists = v[ranked]  # (n, K, d)
    sims = np.einsum("nkd,njd->nkj", lists, lists)
    k = ranked.shape[1]
    off_diagonal = sims.sum(axis=(1, 2)) - np.trace(sims, axis1=1, axis2=2)
    out: Floats = off_diagonal / (k * (k - 1))
    return out


def mean_interval(values: Floats, alpha: float = 0.05) -> Interval:
    """The mean with a normal interval (rows are independent evaluation states)."""
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    half = z_value(alpha) * float(values.std(ddof=1)) / np.sqrt(n) if n > 1 else float("inf")
    return Interval(mean, mean - half, mean + half)


@dataclass(frozen=True, slots=True)
class RankingReport:
    ndcg: Interval
    hit: Interval
    precision: Interval
    coverage: float
    intra_list_similarity: float | None
    n: int


def evaluate_ranking(
    ranked: Ints,
    relevant: Sequence[set[int]] | Ints,
    n_items: int,
    item_vectors: Floats | None = None,
    alpha: float = 0.05,
) -> RankingReport:
    ils = None
    if item_vectors is not None:
        ils = float(intra_list_similarity(ranked, item_vectors).mean())
    return RankingReport(
        ndcg=mean_interval(ndcg_at_k(ranked, relevant), alpha),
        hit=mean_interval(hit_at_k(ranked, relevant), alpha),
        precision=mean_interval(precision_at_k(ranked, relevant), alpha),
        coverage=coverage(ranked, n_items),
        intra_list_similarity=ils,
        n=len(ranked),
    )
