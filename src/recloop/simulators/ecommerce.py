"""A synthetic e-commerce world with a ground-truth user model, for learning from logs.

Items have latent vectors grouped by category and a Zipf base popularity. Users have latent
tastes that drift a little at every new session. When the shop shows a user an item, the
user responds with one behaviour -- ``skip``, ``view``, ``cart``, ``favourite`` or ``buy``
-- with probabilities that rise with their affinity to the item (taste . item vector plus
the item's appeal). Rewards per behaviour are configurable (default view 1, cart 2,
favourite 2, buy 3, skip 0).

The logging policy is popularity-skewed (a softmax of base popularity, plus a little
relevance and a uniform floor); the probability of every shown item is logged, so
off-policy methods can correct for it. The same world answers interactive queries
(:meth:`EcommerceWorld.respond`) for evaluating a policy against the ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recloop.agents.datasets import InteractionLog

RESPONSES: tuple[str, ...] = ("skip", "view", "cart", "favourite", "buy")
DEFAULT_REWARDS: Mapping[str, float] = {
    "skip": 0.0,
    "view": 1.0,
    "cart": 2.0,
    "favourite": 2.0,
    "buy": 3.0,
}


@dataclass(frozen=True, slots=True)
class EcommerceConfig:
    n_users: int = 1000
    n_items: int = 500
    n_categories: int = 20
    dim: int = 16
    taste_drift: float = 0.1
    """Std of the random step a user's taste takes at each new session."""
    zipf: float = 1.1
    """Skew of the items' base popularity."""
    popularity_appeal: float = 0.4
    """How much popular items are also appealing (negative: the popular items are the worse
    ones -- a logger that follows popularity is then biased away from what users like)."""
    logging_popularity: float = 1.0
    """How strongly the logging policy follows popularity (softmax inverse temperature on
    log-popularity)."""
    logging_relevance: float = 0.5
    """How much it follows the user's true affinity (small: a biased logger)."""
    logging_uniform: float = 0.05
    """Uniform floor: every item keeps some probability (off-policy support)."""
    session_length: float = 8.0
    """Mean items shown per session (geometric)."""
    sessions_per_user: float = 3.0
    seconds_between_sessions: float = 3 * 86400.0
    rewards: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REWARDS))
    seed: int = 0


def user_id(index: int) -> str:
    """How logs name the world's users (``u0``, ``u1``, ...): ids, not indices."""
    return f"u{index}"


def item_id(index: int) -> str:
    """How logs name the world's items (``i0``, ``i1``, ...)."""
    return f"i{index}"


def strongly_biased_config(seed: int = 0, n_users: int = 200, n_items: int = 50) -> EcommerceConfig:
    """The designed hard case for off-policy learning: the logger shows items by popularity
    alone (softmax of 3 x log-popularity, a 20% uniform floor, no relevance), and the popular
    items are the *less* appealing ones. Imitating the logger's rewarded choices inherits
    its bias; correcting for it (pi / beta) should move towards what users like."""
    return EcommerceConfig(
        n_users=n_users,
        n_items=n_items,
        seed=seed,
        logging_popularity=3.0,
        logging_relevance=0.0,
        logging_uniform=0.2,
        popularity_appeal=-0.6,
    )


@dataclass(frozen=True, slots=True)
class EcommerceLog:
    """One row per shown item, in time order."""

    user: NDArray[np.int64]
    session: NDArray[np.int64]
    item: NDArray[np.int64]
    response: NDArray[np.int64]
    """Index into :data:`RESPONSES`."""
    reward: NDArray[np.float64]
    propensity: NDArray[np.float64]
    timestamp: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.item)

    def behaviours(self) -> list[str]:
        return [RESPONSES[r] for r in self.response]


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
    return out


class EcommerceWorld:
    def __init__(self, config: EcommerceConfig | None = None) -> None:
        self.config = cfg = config or EcommerceConfig()
        rng = np.random.default_rng([cfg.seed, 0])
        centroids = rng.normal(size=(cfg.n_categories, cfg.dim))
        self.item_category = rng.integers(0, cfg.n_categories, cfg.n_items)
        vectors = centroids[self.item_category] + 0.5 * rng.normal(size=(cfg.n_items, cfg.dim))
        self.item_vectors = vectors / np.sqrt(cfg.dim)
        ranks = rng.permutation(cfg.n_items) + 1
        self.item_popularity = 1.0 / ranks.astype(np.float64) ** cfg.zipf
        self.item_popularity /= self.item_popularity.sum()
        # popular items tend to be appealing (that is partly why they are popular)
        log_pop = np.log(self.item_popularity)
        self.item_appeal = 0.4 * rng.normal(size=cfg.n_items) + cfg.popularity_appeal * (
            (log_pop - log_pop.mean()) / log_pop.std()
        )
        tastes = centroids[rng.integers(0, cfg.n_categories, cfg.n_users)]
        self.initial_tastes = tastes + 0.5 * rng.normal(size=(cfg.n_users, cfg.dim))
        self._reward_of = np.array([cfg.rewards.get(r, 0.0) for r in RESPONSES])

    # -- the ground-truth user model ----------------------------------------------------
    def affinity(self, tastes: NDArray[np.float64]) -> NDArray[np.float64]:
        """(users, items) affinities of the given taste vectors."""
        out: NDArray[np.float64] = tastes @ self.item_vectors.T + self.item_appeal
        return out

    def response_probabilities(self, affinity: NDArray[np.float64]) -> NDArray[np.float64]:
        """P(response) for each affinity, shape (..., 5): engagement is a sigmoid of the
        affinity; deeper behaviours need more of it."""
        engage = 1.0 / (1.0 + np.exp(-(affinity - 1.0)))
        deep = 1.0 / (1.0 + np.exp(-(affinity - 2.5)))
        p_buy = 0.5 * deep * engage
        p_cart = 0.25 * deep * engage
        p_fav = 0.15 * engage * (1 - deep)
        p_view = engage - p_buy - p_cart - p_fav
        p_skip = 1.0 - engage
        return np.stack([p_skip, p_view, p_cart, p_fav, p_buy], axis=-1)

    def expected_reward(self, tastes: NDArray[np.float64]) -> NDArray[np.float64]:
        """(users, items) expected reward of showing each item: the ground truth."""
        out: NDArray[np.float64] = self.response_probabilities(self.affinity(tastes)) @ (
            self._reward_of
        )
        return out

    def logging_policy(self, tastes: NDArray[np.float64]) -> NDArray[np.float64]:
        """(users, items) probabilities of the biased logging policy."""
        cfg = self.config
        z = cfg.logging_popularity * np.log(self.item_popularity) + cfg.logging_relevance * (
            self.affinity(tastes)
        )
        probs = (1 - cfg.logging_uniform) * _softmax(z) + cfg.logging_uniform / cfg.n_items
        return probs

    def respond(
        self, taste: NDArray[np.float64], item: int, rng: np.random.Generator
    ) -> tuple[str, float]:
        """One user's response to being shown ``item`` (interactive evaluation)."""
        probs = self.response_probabilities(self.affinity(taste[None, :])[0, item])
        r = int(rng.choice(len(RESPONSES), p=probs))
        return RESPONSES[r], float(self._reward_of[r])

    # -- logs ------------------------------------------------------------------------------
    def generate(self, n_events: int, start_time: float = 1_700_000_000.0) -> EcommerceLog:
        """About ``n_events`` logged rows: users visit in sessions, the logging policy shows
        items, users respond. Vectorised per session."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 1])
        tastes = self.initial_tastes.copy()
        cols: dict[str, list[NDArray[Any]]] = {
            k: [] for k in ("user", "session", "item", "response", "propensity", "timestamp")
        }
        produced = 0
        session_id = 0
        clock = np.full(cfg.n_users, start_time) + rng.uniform(
            0, cfg.seconds_between_sessions, cfg.n_users
        )
        while produced < n_events:
            users = rng.permutation(cfg.n_users)
            tastes[users] += cfg.taste_drift * rng.normal(size=(len(users), cfg.dim))
            probs = self.logging_policy(tastes[users])
            lengths = rng.geometric(1.0 / cfg.session_length, size=len(users))
            for j, user in enumerate(users):
                n = int(lengths[j])
                items = rng.choice(cfg.n_items, size=n, p=probs[j])
                resp = self.response_probabilities(self.affinity(tastes[user][None, :])[0, items])
                u = rng.random(n)[:, None]
                responses = np.minimum((resp.cumsum(axis=1) < u).sum(axis=1), len(RESPONSES) - 1)
                t = clock[user] + np.cumsum(rng.exponential(30.0, size=n))
                clock[user] = t[-1] + rng.exponential(cfg.seconds_between_sessions)
                cols["user"].append(np.full(n, user))
                cols["session"].append(np.full(n, session_id))
                cols["item"].append(items)
                cols["response"].append(responses)
                cols["propensity"].append(probs[j, items])
                cols["timestamp"].append(t)
                session_id += 1
                produced += n
                if produced >= n_events:
                    break
        arrays = {k: np.concatenate(v) for k, v in cols.items()}
        order = np.argsort(arrays["timestamp"], kind="stable")
        response = arrays["response"][order].astype(np.int64)
        return EcommerceLog(
            user=arrays["user"][order].astype(np.int64),
            session=arrays["session"][order].astype(np.int64),
            item=arrays["item"][order].astype(np.int64),
            response=response,
            reward=self._reward_of[response],
            propensity=arrays["propensity"][order].astype(np.float64),
            timestamp=arrays["timestamp"][order].astype(np.float64),
        )


Recommender = Callable[[int, Sequence[int], set[int]], int]
"""(user index, recent engaged items oldest first, items already shown this session) ->
the item to show next (one not shown yet)."""


def interactive_returns(
    world: EcommerceWorld,
    recommend: Recommender,
    *,
    sessions: int = 200,
    steps: int = 10,
    last_n: int = 10,
    seed: int = 0,
) -> NDArray[np.float64]:
    """Cumulative reward of each simulated session when ``recommend`` picks what to show,
    against the ground-truth user model (users drawn at random, tastes as at the start)."""
    rng = np.random.default_rng([world.config.seed, 2, seed])
    out = np.empty(sessions)
    for s in range(sessions):
        user = int(rng.integers(world.config.n_users))
        taste = world.initial_tastes[user]
        history: list[int] = []
        shown: set[int] = set()
        total = 0.0
        for _ in range(steps):
            item = int(recommend(user, tuple(history), shown))
            shown.add(item)
            _, reward = world.respond(taste, item, rng)
            total += reward
            if reward > 0:
                history = [*history, item][-last_n:]
        out[s] = total
    return out


def _first_not_in(order: Sequence[int], exclude: set[int]) -> int:
    return next((i for i in order if i not in exclude), order[0])


def random_recommender(n_items: int, seed: int = 0) -> Recommender:
    rng = np.random.default_rng(seed)

    def recommend(user: int, history: Sequence[int], shown: set[int]) -> int:
        while True:
            item = int(rng.integers(n_items))
            if item not in shown or len(shown) >= n_items:
                return item

    return recommend


def popularity_recommender(counts: NDArray[np.float64]) -> Recommender:
    """The most engaged-with items (e.g. in the training split), skipping recent ones."""
    order = [int(i) for i in np.argsort(-counts, kind="stable")]

    def recommend(user: int, history: Sequence[int], shown: set[int]) -> int:
        return _first_not_in(order, shown | set(history))

    return recommend


def oracle_recommender(world: EcommerceWorld) -> Recommender:
    """The best item for each user under the ground truth (an upper bound, for reference)."""
    ranked = np.argsort(-world.expected_reward(world.initial_tastes), axis=1)[:, :50]

    def recommend(user: int, history: Sequence[int], shown: set[int]) -> int:
        return _first_not_in([int(i) for i in ranked[user]], shown)

    return recommend


def from_ecommerce(log: EcommerceLog, n_users: int, n_items: int) -> InteractionLog:
    """The world's log as the agents read logs (an ``InteractionLog``), users and items named
    as the world names them (``u3``, ``i17``). Here, not in ``recloop.agents.datasets``:
    reading the synthetic world's log is the simulator's job (agents import no simulator)."""
    return InteractionLog(
        user=log.user,
        item=log.item,
        reward=log.reward,
        timestamp=log.timestamp,
        session=log.session,
        propensity=log.propensity,
        user_ids=tuple(user_id(u) for u in range(n_users)),
        item_ids=tuple(item_id(i) for i in range(n_items)),
    )
