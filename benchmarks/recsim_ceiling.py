"""How high can any ranker go in RecSim's interest evolution? A ceiling for the agents.

``python -m benchmarks.recsim_ceiling [--quick]`` (needs the ``sims`` extra). Watch time per
user, 3 seeds x 200 users (``--quick``: 1 seed), for:

* ``revealed-quality``: the harness's strongest simple baseline (what any agent may see);
* ``oracle-quality``: ranking by each topic's *true* mean quality (RecSim's hidden cluster
  means), which the revealed running mean converges to after one look;
* ``oracle-interest``: the true quality plus 0.3 times the user's *true* interest in the
  topic (both scaled to [-1, 1]): does knowing the user help the heuristic?
* ``oracle-ratio``: a ranker that reads the hidden user state (true interests) and RecSim's
  own budget rule, and shows the slate with the most watch time per minute of budget spent:
  the per-step optimum of the session's budget arithmetic (a watched video costs
  ``4 - 4 * 0.9 / 3.4 * quality`` minutes of budget, a request without a click 0.5).

No agent may read what the oracles read; they say how much room a learning agent has above
the heuristic. Each figure is a mean with a 95% interval over every user of every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import cli, figure, print_table, smoke
from recloop.evaluation.ranking import mean_interval
from recloop.experiments.baselines import RevealedQuality
from recloop.simulators.environment import Feedback, Ranker, Request, play
from recloop.simulators.recsim_adapter import RecSimConfig, RecSimInterestEvolution, topics_of

BENCH = "recsim_ceiling"
_BUDGET_PER_QUALITY = 4 * 0.9 / 3.4  # RecSim's user_update_alpha times the video length


class _Oracle:
    """Reads the environment's hidden state: a ceiling, never an agent."""

    def __init__(self, env: RecSimInterestEvolution, seed: int, mode: str) -> None:
        self.env, self.mode = env, mode
        self.rng = np.random.default_rng(seed)

    def rank(self, request: Request) -> list[int]:
        inner: Any = self.env._env._environment
        quality = inner._document_sampler.cluster_means[topics_of(request)]
        interest = inner._user_model._user_state.user_interests[topics_of(request)]
        if self.mode != "oracle-ratio":
            weight = 0.3 if self.mode == "oracle-interest" else 0.0
            score = quality / 3.4 + weight * interest
            order: list[int] = np.lexsort((self.rng.random(len(score)), -score)).tolist()
            return order
        score = interest + 1.0  # RecSim's choice model: interest - min_normalizer (-1)
        best, pair = -np.inf, (0, 1)
        for i in range(len(score)):
            for j in range(len(score)):
                if i == j:
                    continue
                p_i, p_j = (score[[i, j]] / (score[i] + score[j] + 2.0)).tolist()
                watch = 4.0 * (p_i + p_j)
                cost = (
                    p_i * (4.0 - _BUDGET_PER_QUALITY * quality[i])
                    + p_j * (4.0 - _BUDGET_PER_QUALITY * quality[j])
                    + 0.5 * (1.0 - p_i - p_j)
                )
                if watch / cost > best:
                    best, pair = watch / cost, (i, j)
        return [*pair, *(k for k in range(len(score)) if k not in pair)]

    def observe(self, feedback: Feedback) -> None:
        """Learns nothing: it knows."""


def _per_user(name: str, seeds: list[int], users: int) -> np.ndarray:
    rewards: list[float] = []
    for seed in (s * 1000 for s in seeds):  # the harness's seeds: the same runs
        env = RecSimInterestEvolution(RecSimConfig(users=users))
        ranker: Ranker = (
            RevealedQuality(seed) if name == "revealed-quality" else _Oracle(env, seed, name)
        )
        per: dict[int, float] = {}

        def count(request: Request, feedback: Feedback, per: dict[int, float] = per) -> None:
            per[request.user] = per.get(request.user, 0.0) + feedback.reward

        play(env, ranker, seed, count)
        rewards += list(per.values())
    return np.array(rewards)


def main(quick: bool) -> list[dict[str, Any]]:
    seeds = [0] if quick else [0, 1, 2]
    users = 30 if smoke() else 200
    rows = []
    for name in ("revealed-quality", "oracle-quality", "oracle-interest", "oracle-ratio"):
        iv = mean_interval(_per_user(name, seeds, users))
        n = users * len(seeds)
        rows.append(
            figure(BENCH, f"{name}_watch_per_user", iv.value, None, n, low=iv.low, high=iv.high)
        )
    print_table("RecSim interest evolution: the heuristic and two oracles", rows)
    return rows


if __name__ == "__main__":
    cli(main, "How high can a ranker go in RecSim's interest evolution")
