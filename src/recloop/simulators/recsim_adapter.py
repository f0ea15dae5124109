"""RecSim's interest-evolution environment (Ie et al. 2019, package ``recsim-no-tf``, the
``sims`` extra) behind recloop's :class:`~recloop.simulators.environment.Environment`.

A RecSim episode is one user's session: each step offers ``candidates`` documents (one-hot
topic features), the agent shows a slate of ``slate_size``, the user clicks at most one and
watches it for a while (the reward: watch time); the session ends when the user's time
budget runs out, and the user's interests drift with what they consume. Here one recloop
episode is ``users`` consecutive RecSim sessions, so agents learn across users.

What an agent observes of the user is only what a recommender could: the topics of what
they clicked so far in the session (RecSim's ``obs['user']`` is the user's *true* interest
vector and is not passed on). Of a document: its topic; of the pair: the user's share of
clicks in that topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recloop.simulators.environment import Feedback, Floats, Request, check_ranking


@dataclass(frozen=True, slots=True)
class RecSimConfig:
    users: int = 100
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
        clicks = np.array([float(r["click"]) for r in responses])
        for r in responses:
            if r["click"]:
                self._clicks[int(r["cluster_id"])] += 1.0
        self.totals["clicks"] += float(clicks.sum())
        self.totals["watch_time"] += float(reward)
        self.totals["steps"] += 1
        shown = request.candidates[slate]
        feedback = Feedback(shown, clicks, np.zeros(len(slate)), float(reward))
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
        first_doc = next(iter(self._obs["doc"].values()))
        self._clicks = np.zeros(len(first_doc))
        self._current = self._request()

    def _request(self) -> Request:
        docs = self._obs["doc"]
        ids = np.array([int(d) for d in docs], dtype=np.int64)
        topics = np.stack([np.asarray(v, dtype=np.float64) for v in docs.values()])
        total = self._clicks.sum()
        share = self._clicks / total if total > 0 else np.zeros_like(self._clicks)
        return Request(
            user=self._user,
            time=float(self._step),
            user_features=np.concatenate([share, [np.log1p(total) / 3.0]]),
            context=np.zeros(0),
            candidates=ids,
            item_features=topics,
            cross_features=(topics @ share)[:, None],
        )
