"""RecSim's interest-evolution environment (Ie et al. 2019, package ``recsim-no-tf``, the
``sims`` extra) behind recloop's :class:`~recloop.simulators.environment.Environment`.

A RecSim episode is one user's session: each step offers ``candidates`` documents (one-hot
topic features), the agent shows a slate of ``slate_size``, the user clicks at most one and
watches it for a while (the reward: watch time); the session ends when the user's time
budget runs out, and the user's interests drift with what they consume. Here one recloop
episode is ``users`` consecutive RecSim sessions, so agents learn across users.

What an agent observes is only what a recommender could log: of the user, the topics of
what they clicked so far in the session and how far the session is; of a document, its
topic and what the responses so far revealed of its topic's quality (RecSim reveals a shown
document's ``quality`` and ``cluster`` in every response, clicked or not): the mean quality
seen in that topic across all users so far, and whether it was ever shown; of the pair, the
user's share of clicks in that topic and their click rate on it when shown. The responses
themselves come back in :attr:`Feedback.observations`. RecSim's ``obs['user']`` is the
user's *true* interest vector and is not passed on, nor is the user's time budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recloop.simulators.environment import Feedback, Floats, Request, check_ranking

QUALITY_RANGE = 3.4
"""RecSim's own bound on a document's quality (cluster means in [-3, 3], sd 0.1): revealed
qualities are divided by it, to [-1, 1]."""


_REVEALED = 2
"""Columns after the topic one-hot in ``item_features``: the topic's revealed quality and
whether it was never shown."""


def topics_of(request: Request) -> NDArray[np.int64]:
    """Each candidate's topic (cluster): its one-hot block leads ``item_features``."""
    out: NDArray[np.int64] = np.argmax(request.item_features[:, :-_REVEALED], axis=1)
    return out


@dataclass(frozen=True, slots=True)
class RecSimConfig:
    users: int = 200
    """RecSim sessions (users) per recloop episode."""
    candidates: int = 10
    slate_size: int = 2


class RecSimInterestEvolution:
    def __init__(self, config: RecSimConfig | None = None) -> None:
        self.config = config or RecSimConfig()
        self.slate_size = self.config.slate_size
        self._env: Any = None
        self._obs: Any = None
        self._user = 0
        self._step = 0
        self._clicks: Floats = np.zeros(0)
        self._shown: Floats = np.zeros(0)
        self._session: Floats = np.zeros(3)
        """This session so far: minutes watched, minutes watched times their quality, and
        requests without a click."""
        self._quality_sum: Floats = np.zeros(0)
        self._quality_seen: Floats = np.zeros(0)
        """Across users: revealed quality summed per topic, and how often revealed."""
        self._current: Request | None = None
        self.totals = {"clicks": 0.0, "watch_time": 0.0, "steps": 0.0}

    def reset(self, seed: int) -> Request:
        try:
            from recsim.environments import interest_evolution
        except ImportError as exc:  # an optional extra
            raise RuntimeError(
                "RecSim is not installed: pip install 'recloop[sims]' (recsim-no-tf, gym)"
            ) from exc
        cfg = self.config
        self._env = interest_evolution.create_environment(
            {
                "num_candidates": cfg.candidates,
                "slate_size": cfg.slate_size,
                "resample_documents": True,
                "seed": seed,
            }
        )
        self._env.seed(seed)
        self._user = 0
        self.totals = dict.fromkeys(self.totals, 0.0)
        self._quality_sum = self._quality_seen = np.zeros(0)
        self._new_user()
        assert self._current is not None
        return self._current

    def step(self, ranking: Sequence[int]) -> tuple[Feedback, Request | None]:
        request = self._current
        if request is None:
            raise RuntimeError("the episode is over: reset() first")
        slate = check_ranking(ranking, self.slate_size)[: self.slate_size]
        self._obs, reward, done, _ = self._env.step(slate)
        responses = self._obs["response"]
        observed = {
            "click": np.array([float(r["click"]) for r in responses]),
            "watch_time": np.array([float(r["watch_time"]) for r in responses]),
            "quality": np.array([float(r["quality"]) for r in responses]),
            "cluster": np.array([float(r["cluster_id"]) for r in responses]),
        }
        clusters = observed["cluster"].astype(np.int64)
        np.add.at(self._clicks, clusters, observed["click"])
        np.add.at(self._shown, clusters, 1.0)
        np.add.at(self._quality_sum, clusters, observed["quality"])
        np.add.at(self._quality_seen, clusters, 1.0)
        clicks = observed["click"]
        self._session += [
            float(observed["watch_time"].sum()),
            float(observed["watch_time"] @ observed["quality"]) / QUALITY_RANGE,
            float(clicks.sum() == 0),
        ]
        self.totals["clicks"] += float(clicks.sum())
        self.totals["watch_time"] += float(reward)
        self.totals["steps"] += 1
        shown = request.candidates[slate]
        feedback = Feedback(
            shown, clicks, np.zeros(len(slate)), float(reward), observed, ends_session=done
        )
        if done:
            self._user += 1
            if self._user >= self.config.users:
                self._current = None
                return feedback, None
            self._new_user()
        else:
            self._step += 1
            self._current = self._request()
        return feedback, self._current

    def _new_user(self) -> None:
        self._obs = self._env.reset()
        self._step = 0
        topics = len(next(iter(self._obs["doc"].values())))
        self._clicks, self._shown = np.zeros(topics), np.zeros(topics)
        self._session = np.zeros(3)
        if len(self._quality_seen) != topics:
            self._quality_sum, self._quality_seen = np.zeros(topics), np.zeros(topics)
        self._current = self._request()

    def _request(self) -> Request:
        docs = self._obs["doc"]
        ids = np.array([int(d) for d in docs], dtype=np.int64)
        topics = np.stack([np.asarray(v, dtype=np.float64) for v in docs.values()])
        total = self._clicks.sum()
        share = self._clicks / total if total > 0 else np.zeros_like(self._clicks)
        rate = (self._clicks + 0.5) / (self._shown + 1.0)
        seen = self._quality_seen > 0
        quality = np.divide(
            self._quality_sum, self._quality_seen, out=np.zeros_like(self._quality_sum), where=seen
        )
        return Request(
            user=self._user,
            time=float(self._step),
            user_features=np.concatenate(
                [share, [np.log1p(total) / 3.0, self._step / 100.0], self._session / 100.0]
            ),
            context=np.zeros(0),
            candidates=ids,
            item_features=np.concatenate(
                [topics, topics @ np.stack([quality / QUALITY_RANGE, ~seen], axis=1)], axis=1
            ),
            cross_features=np.stack([topics @ share, topics @ rate], axis=1),
        )
