"""RecoGym (Rohde et al. 2018, package ``recogym``; see the README for its install) behind
recloop's :class:`~recloop.simulators.environment.Environment`.

RecoGym alternates, per user, *organic* sessions (the user browses products on their own)
and *bandit* steps (the user is on a publisher's page and is shown one recommended
product, which they click or not). Both behaviours come from the same latent user vector,
so what a user browsed tells which recommendation they would click: the signal an agent has
to find. One recloop episode is ``users`` consecutive RecoGym users; each request is one
bandit step, with the user's organic history so far as features.

What an agent observes: of the user, their share of organic views per product and how much
they browsed; of a product, its one-hot id; of the pair, the user's share of views of that
product and whether they viewed it at all. The reward is the click.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recloop.simulators.environment import Feedback, Floats, Request, check_ranking


@dataclass(frozen=True, slots=True)
class RecoGymConfig:
    users: int = 500
    """RecoGym users per recloop episode (about 85 bandit steps each)."""
    products: int = 10
    options: dict[str, Any] = field(default_factory=dict)
    """Further RecoGym ``env_1_args`` (e.g. ``number_of_flips``, ``sigma_omega``)."""


def _recogym() -> Any:
    """Import RecoGym with the two shims its 2019 code needs on today's SciPy."""
    try:
        import scipy

        if not hasattr(scipy, "rand"):  # removed in SciPy 1.12; RecoGym imports it
            scipy.rand = np.random.rand
        import recogym
        from recogym.envs import RecoEnv1
    except ImportError as exc:  # an optional, old package
        raise RuntimeError(
            "RecoGym is not installed: pip install 'recloop[sims]' and then "
            "pip install --no-deps recogym==0.1.3.0 (its declared dependencies pull TensorFlow)"
        ) from exc
    return recogym, RecoEnv1


class RecoGym:
    slate_size = 1

    def __init__(self, config: RecoGymConfig | None = None) -> None:
        self.config = config or RecoGymConfig()
        p = self.config.products
        self._env: Any = None
        self._user = 0
        self._views: Floats = np.zeros(p)
        self._current: Request | None = None
        self._bandit_steps = 0
        self.totals = {"clicks": 0.0, "steps": 0.0, "organic_views": 0.0}

    def reset(self, seed: int) -> Request:
        recogym, env_class = _recogym()
        args = dict(recogym.env_1_args)
        args.update(self.config.options)
        args.update(num_products=self.config.products, random_seed=seed)
        self._env = env_class()
        self._env.init_gym(args)
        self._user = 0
        self.totals = dict.fromkeys(self.totals, 0.0)
        request = self._next_user()
        if request is None:
            raise RuntimeError("no RecoGym user reached a bandit step: raise users")
        return request

    def step(self, ranking: Sequence[int]) -> tuple[Feedback, Request | None]:
        request = self._current
        if request is None:
            raise RuntimeError("the episode is over: reset() first")
        slot = check_ranking(ranking, self.slate_size)[0]
        obs, reward, done, _ = self._env.step(int(request.candidates[slot]))
        click = float(reward or 0.0)
        self._record(obs)
        self.totals["clicks"] += click
        self.totals["steps"] += 1
        feedback = Feedback(
            request.candidates[[slot]], np.array([click]), np.zeros(1), click, ends_session=done
        )
        if done:
            self._user += 1
            self._current = self._next_user()
        else:
            self._bandit_steps += 1
            self._current = self._request()
        return feedback, self._current

    def _record(self, obs: Any) -> None:
        for event in obs.sessions():
            self._views[int(event["v"])] += 1.0
            self.totals["organic_views"] += 1

    def _next_user(self) -> Request | None:
        """The next user that reaches a bandit step (some leave after browsing only)."""
        while self._user < self.config.users:
            self._env.reset(self._user)
            self._views = np.zeros(self.config.products)
            self._bandit_steps = 0
            obs, _, done, _ = self._env.step(None)
            self._record(obs)
            if not done:
                self._current = self._request()
                return self._current
            self._user += 1
        self._current = None
        return None

    def _request(self) -> Request:
        p = self.config.products
        total = self._views.sum()
        share = self._views / total if total > 0 else np.zeros(p)
        return Request(
            user=self._user,
            time=float(self._bandit_steps),
            user_features=np.concatenate([share, [np.log1p(total) / 3.0]]),
            context=np.zeros(0),
            candidates=np.arange(p, dtype=np.int64),
            item_features=np.eye(p),
            cross_features=np.stack([share, (self._views > 0).astype(np.float64)], axis=1),
        )
