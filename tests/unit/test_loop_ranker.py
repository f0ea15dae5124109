"""The decision loop as a simulator ranker: every request is a logged decision, clicks are
joined and learned from by the loop's own pipeline, and it learns the planted preference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recloop.experiments.loop_ranker import LoopRanker
from recloop.simulators.environment import Feedback, Request, check_ranking, play


class GoodItem:
    """Three candidates a request; the one whose feature ``good`` is 1 gets clicked with
    probability 0.8, the others 0.1. Which position it takes is random."""

    slate_size = 1

    def __init__(self, requests: int) -> None:
        self.requests = requests
        self._rng = np.random.default_rng(0)
        self._n = 0
        self._good = 0

    def reset(self, seed: int) -> Request:
        self._rng, self._n = np.random.default_rng(seed), 0
        return self._request()

    def _request(self) -> Request:
        self._good = int(self._rng.integers(3))
        items = np.zeros((3, 1))
        items[self._good, 0] = 1.0
        return Request(
            user=self._n % 7,
            time=float(self._n),
            user_features=np.array([1.0]),
            context=np.zeros(0),
            candidates=np.arange(3, dtype=np.int64),
            item_features=items,
            cross_features=np.zeros((3, 0)),
        )

    def step(self, ranking: Sequence[int]) -> tuple[Feedback, Request | None]:
        slot = check_ranking(ranking, 1)[0]
        p = 0.8 if slot == self._good else 0.1
        click = float(self._rng.random() < p)
        feedback = Feedback(np.array([slot]), np.array([click]), np.zeros(1), click)
        self._n += 1
        return feedback, (self._request() if self._n < self.requests else None)


def _run(seed: int) -> tuple[list[bool], LoopRanker]:
    env, ranker = GoodItem(2000), LoopRanker(seed, epsilon=0.1)
    picked_good: list[bool] = []
    play(
        env,
        ranker,
        seed,
        lambda req, fb: picked_good.append(bool(req.item_features[fb.shown[0], 0])),
    )
    return picked_good, ranker


def test_the_loop_learns_the_planted_preference_and_logs_every_decision():
    picked_good, ranker = _run(seed=3)
    try:
        assert ranker.loop.log.count("decision") == 2000
        ranker.clock.advance(5.0)
        ranker.loop.step()
        assert ranker.loop.joined.count() == 2000  # every decision joined, clicked or not
        assert ranker.model_version != "default"  # a learned model serves
        late = np.mean(picked_good[-500:])
        assert late >= 0.9, late  # greedy 90% of the time with epsilon 0.1: nearly all good
        assert np.mean(picked_good[:100]) < 0.6  # it had to learn it (1/3 at random)
    finally:
        ranker.close()


def test_a_run_repeats_from_its_seed():
    first, a = _run(seed=5)
    second, b = _run(seed=5)
    a.close()
    b.close()
    assert first == second
