"""One training run, as ``recloop train`` does it: interaction log -> trajectories -> time
split -> embeddings pre-trained on the training split only -> the algorithm's ``fit``, with
next-item NDCG@10 on the validation split after every epoch (the evaluation curve) -> test
metrics. The CLI adds progress bars, files and the model store around this."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recloop.agents.base import Agent
from recloop.agents.datasets import InteractionLog, Trajectories, build_trajectories, split_by_time
from recloop.agents.embeddings import EmbeddingConfig, Embeddings, pretrain_embeddings
from recloop.agents.evaluation import offline_report
from recloop.agents.registry import make_agent
from recloop.core.errors import InvalidInputError
from recloop.evaluation.ranking import RankingReport

EpochHook = Callable[[int, float, float | None], None]
"""(epoch, training figure, validation NDCG@10 or None) -> None."""


@dataclass(frozen=True)
class TrainSpec:
    algo: str
    params: Mapping[str, Any] = field(default_factory=dict)
    """Hyperparameter overrides (names as in the algorithm's config dataclass)."""
    seed: int = 0
    last_n: int = 10
    """Items in a state's history (the stream's last-N)."""
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    pretrain_embeddings: bool = True
    """Pre-train MF/BPR user and item vectors on the training split first."""
    embedding_epochs: int = 10
    item_content: NDArray[np.float32] | None = field(default=None, compare=False)
    """(n_items, d) item features from the catalogue: the pre-trained item vectors then
    come from content too (items without interactions included)."""


@dataclass
class TrainRun:
    agent: Agent
    spec: TrainSpec
    curve: list[float]
    """The algorithm's training figure per epoch (its loss)."""
    validation_ndcg: list[float]
    """Next-item NDCG@10 on the validation split after each epoch (empty without one)."""
    test: RankingReport
    fit_seconds: float
    embedding_seconds: float
    train_steps: int

    @property
    def samples_per_second(self) -> float:
        """Logged steps processed per second of ``fit`` (all epochs)."""
        epochs = max(1, len(self.curve))
        return self.train_steps * epochs / max(self.fit_seconds, 1e-9)


def split(log: InteractionLog, spec: TrainSpec) -> tuple[Trajectories, Trajectories, Trajectories]:
    data = build_trajectories(log, spec.last_n)
    train, valid, test = split_by_time(data, spec.valid_fraction, spec.test_fraction)
    if not (train.reward > 0).any():
        raise InvalidInputError("the training split has no engaged steps (reward > 0)")
    return train, valid, test


def train_agent(
    log: InteractionLog, spec: TrainSpec, on_epoch: EpochHook | None = None
) -> TrainRun:
    train, valid, test = split(log, spec)
    embeddings: Embeddings | None = None
    start = time.perf_counter()
    if spec.pretrain_embeddings:
        emb_cfg = EmbeddingConfig(epochs=spec.embedding_epochs, seed=spec.seed)
        if "embedding_dim" in spec.params:
            emb_cfg.dim = int(spec.params["embedding_dim"])
        embeddings, _ = pretrain_embeddings(train, emb_cfg, item_content=spec.item_content)
    embedding_seconds = time.perf_counter() - start
    agent = make_agent(
        spec.algo, log.n_users, log.n_items, {**spec.params, "seed": spec.seed}, embeddings
    )
    has_valid = bool((valid.reward > 0).any())
    validation: list[float] = []
    evaluating = 0.0

    def progress(epoch: int, figure: float) -> None:
        nonlocal evaluating
        t = time.perf_counter()
        ndcg = offline_report(agent, valid).ndcg.value if has_valid else None
        if ndcg is not None:
            validation.append(ndcg)
        evaluating += time.perf_counter() - t
        if on_epoch is not None:
            on_epoch(epoch, figure, ndcg)

    start = time.perf_counter()
    curve = agent.fit(train, progress)
    fit_seconds = time.perf_counter() - start - evaluating
    if not np.isfinite(curve).all():
        raise InvalidInputError(f"{spec.algo} diverged: its training loss is not finite")
    return TrainRun(
        agent=agent,
        spec=spec,
        curve=curve,
        validation_ndcg=validation,
        test=offline_report(agent, test),
        fit_seconds=fit_seconds,
        embedding_seconds=embedding_seconds,
        train_steps=len(train),
    )
