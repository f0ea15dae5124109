"""DRN (Zheng et al., "DRN: A Deep Reinforcement Learning Framework for News
Recommendation", WWW 2018): a dueling double DQN that ranks candidates, rewarded for clicks
*and* for the user coming back, exploring online with Dueling Bandit Gradient Descent.

* **Q network** (dueling): ``Q(s, a) = V(s) + A(s, a)``; V sees the user and context
  features, A all four groups (user, context, user-item cross, item). A request's candidates
  are scored in one pass and ranked by Q (by A alone: V is the same for all of them).
* **Reward**: ``clicks + beta * activeness``, activeness the survival model of the user's
  return (``features/activeness.py``): a shown item's transition completes when the same
  user next arrives, with the activeness they return with (a quick return is worth more),
  and that request's state and candidates as the next state.
* **Double DQN** targets: ``r + gamma * Q_target(s', argmax_a' Q(s', a'))``; the target
  network is synced after each major update.
* **Minor update** (every request, :mod:`recloop.agents.dbgd`): perturb the weights
  ``W~ = W + alpha * U(-1, 1) * W``, rank with both, show their probabilistic interleaving;
  if the user clicks more on the exploration list's items, ``W <- W + eta (W~ - W)``.
* **Major update** (every ``major_every`` requests): minibatch steps on the replay memory.
  The memory holds NumPy arrays, not tensors: tensors are objects Python's garbage
  collector traverses, and a full collection over tens of thousands of them paused
  requests (README, "Measurements behind the code").

Defaults from the paper: ``gamma`` 0.4, ``beta`` 0.05, ``alpha`` 0.1, ``eta`` 0.05. The
ablations are switches: ``minor_updates=False`` serves the greedy ranking; ``beta=0`` drops
the activeness term.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from recloop.agents.dbgd import (
    EXPLORE,
    Interleaving,
    Twins,
    credit,
    interleave,
    move_towards,
)
from recloop.agents.networks import mlp
from recloop.core.interaction import Feedback, Request
from recloop.features.activeness import Activeness

Floats = NDArray[np.float64]
Float32s = NDArray[np.float32]
Transition = tuple[Float32s, Float32s, float, Float32s, Float32s, float]
"""(state, pair, reward, next state, next candidates' pairs, alive): one shown item."""


@dataclass
class DRNConfig:
    hidden: int = 64
    """Width of the value and advantage MLPs."""
    gamma: float = 0.4
    """Discount between a user's consecutive visits (the paper's 0.4)."""
    beta: float = 0.05
    """Weight of the user's activeness at their return in the reward (the paper's 0.05)."""
    minor_updates: bool = True
    """DBGD exploration and minor updates; False serves the greedy ranking (ablation)."""
    alpha: float = 0.1
    """DBGD perturbation: each weight moves by up to alpha of itself."""
    eta: float = 0.05
    """DBGD step towards a winning exploration network."""
    interleave_tau: float = 3.0
    """Probabilistic interleaving: P(rank r) ~ 1 / r^tau within the chosen list."""
    major_every: int = 200
    """Requests between major updates."""
    major_steps: int = 40
    """Minibatch steps per major update."""
    batch_size: int = 128
    replay_size: int = 50_000
    """Transitions kept (one per shown item), oldest dropped first."""
    learning_rate: float = 1e-3
    returns: Literal["td", "session"] = "td"
    """``td``: the paper's one-step double-DQN target. ``session``: where sessions end (the
    environment says so), each shown item's target is its click plus the session's
    discounted clicks after it (gamma per request), learned when the session ends. Use it
    where what an item does to the user shows only in how long they stay (RecSim: quality
    tops up a hidden time budget), which no one-step target can see."""
    activeness: Activeness = field(default_factory=Activeness)
    seed: int = 0


class DuelingQ(nn.Module):
    """``Q(s, a) = V(user, context) + A(user, context, cross, item)``."""

    def __init__(self, state_dim: int, pair_dim: int, hidden: int) -> None:
        super().__init__()
        self.value = mlp([state_dim, hidden, 1])
        self.advantage = mlp([state_dim + pair_dim, hidden, hidden, 1])

    def forward(self, state: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """state (B, ds), pairs (B, m, dp: cross + item features) -> Q (B, m)."""
        s = state.unsqueeze(1).expand(-1, pairs.shape[1], -1)
        advantage = self.advantage(torch.cat([s, pairs], -1)).squeeze(-1)
        out: torch.Tensor = self.value(state) + advantage
        return out


def arrays(request: Request) -> tuple[Float32s, Float32s]:
    """(state (ds,), pairs (m, dp)) as float32 arrays: what the replay memory keeps."""
    state = np.concatenate([request.user_features, request.context]).astype(np.float32)
    pairs = np.concatenate([request.cross_features, request.item_features], axis=1)
    return state, pairs.astype(np.float32)


def features(request: Request) -> tuple[torch.Tensor, torch.Tensor]:
    """(state (ds,), pairs (m, dp)) as float tensors."""
    state, pairs = arrays(request)
    return torch.from_numpy(state), torch.from_numpy(pairs)


def _inputs(request: Request) -> torch.Tensor:
    """The advantage network's input: (m, ds + dp), the state beside each candidate's pair."""
    state, pairs = features(request)
    return torch.cat([state.expand(len(pairs), -1), pairs], 1)


@dataclass
class _Pending:
    """A shown slate waiting for its user's next visit to complete its transitions."""

    state: Float32s
    pairs: Float32s
    """(k, dp) the shown items' features."""
    clicks: Floats
    time: float
    activeness: float
    user: int


class DRN:
    """Online DRN for an :class:`~recloop.simulators.environment.Environment`: ``rank`` a
    request, then ``observe`` its feedback; learning happens inside."""

    def __init__(
        self, state_dim: int, pair_dim: int, slate_size: int, cfg: DRNConfig | None = None
    ) -> None:
        self.cfg = cfg = cfg or DRNConfig()
        torch.manual_seed(cfg.seed)
        self.q = DuelingQ(state_dim, pair_dim, cfg.hidden)
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.twins = Twins(self.q)
        self.explore = self.twins.explore
        """DBGD's perturbed network, rewritten at every request."""
        self.opt = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate)
        self.slate_size = slate_size
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.replay: deque[Transition] = deque(maxlen=cfg.replay_size)
        self.pending: dict[int, _Pending] = {}
        self.sessions: dict[int, list[_Pending]] = {}
        """user -> the session's shown slates so far (``returns="session"`` only)."""
        self.visits: dict[int, tuple[float, float]] = {}
        """user -> (last visit time, activeness then), as the system observes them."""
        self.requests = 0
        self.stats = {"explore_wins": 0, "comparisons": 0, "major_updates": 0}
        self._shown: tuple[Request, Interleaving | None, nn.Module | None] | None = None

    @torch.no_grad()
    def scores(self, request: Request, net: nn.Module | None = None) -> torch.Tensor:
        state, pairs = features(request)
        out: torch.Tensor = (net or self.q)(state[None], pairs[None])[0]
        return out

    def rank(self, request: Request) -> list[int]:
        """Positions into ``request.candidates``, best first (the shown slate leads)."""
        self._arrive(request)
        if not self.cfg.minor_updates:
            with torch.no_grad():
                advantage = self.q.advantage(_inputs(request))[:, 0]
            self._shown = (request, None, None)
            out: list[int] = torch.argsort(advantage, descending=True).tolist()
            return out
        explore_net = self.twins.perturb(self.cfg.alpha, self.gen)
        greedy, explore = torch.argsort(self._twin_advantages(request), descending=True).tolist()
        mixed = interleave(greedy, explore, self.slate_size, self.rng, self.cfg.interleave_tau)
        self._shown = (request, mixed, explore_net)
        shown = set(mixed.items)
        rest = [i for i in greedy if i not in shown]
        return [*mixed.items, *rest]

    def _twin_advantages(self, request: Request) -> torch.Tensor:
        """A(s, a) of W and of W~ (rows 0 and 1, one column per candidate), in one pass.
        V(s) is the same for every candidate of a request, so A alone orders them."""
        return self.twins.forward(self.q.advantage, "advantage", _inputs(request))[..., 0]

    def observe(self, feedback: Feedback) -> None:
        """The user's clicks on what ``rank`` showed: the minor update, the pending
        transition, and (on cadence) a major update."""
        assert self._shown is not None, "observe() follows rank()"
        request, mixed, explore_net = self._shown
        clicks = np.asarray(feedback.clicks, dtype=np.float64)
        if mixed is not None and explore_net is not None:
            self.stats["comparisons"] += 1
            if credit(mixed, clicks.tolist()) == EXPLORE:
                move_towards(self.q, explore_net, self.cfg.eta)
                self.stats["explore_wins"] += 1
        self._record(request, _positions(request, feedback.shown.tolist()), clicks)
        if feedback.ends_session:
            self.finish_user(request.user, request.time)

    def learn_logged(
        self, request: Request, chosen: int, reward: float, probability: float
    ) -> None:
        """Learn from a decision somebody else explored and logged (the decision loop: its
        explorer chose position ``chosen`` with ``probability``; ``reward`` came back).

        The minor update compares W and W~ on the logged outcome instead of an interleaved
        list: each network is credited with the inverse-propensity value of the decision
        when its own top pick is the logged choice, and W moves towards W~ when W~'s credit
        is higher (it would have chosen the clicked item, W would not)."""
        self._arrive(request)
        if self.cfg.minor_updates:
            explore_net = self.twins.perturb(self.cfg.alpha, self.gen)
            top, top_explore = torch.argmax(self._twin_advantages(request), dim=1).tolist()
            if top != top_explore and chosen in (top, top_explore):
                self.stats["comparisons"] += 1
                value = reward / max(probability, 1e-6)
                credit_w = value if chosen == top else 0.0
                credit_explore = value if chosen == top_explore else 0.0
                if credit_explore > credit_w:
                    move_towards(self.q, explore_net, self.cfg.eta)
                    self.stats["explore_wins"] += 1
        self._record(request, [chosen], np.array([reward], dtype=np.float64))

    def learn_interleaved(
        self, request: Request, chosen: int, reward: float, explored: bool, perturbation: int
    ) -> None:
        """Learn from a decision a served version explored by DBGD's interleaving (the
        loop's ``drn.exploration = "interleave"``): ``explored`` says the chosen action came
        from the perturbed network's list, ``perturbation`` seeds that network's draw. A
        rewarded action from the perturbed list is a win for it: W moves towards the same
        perturbation of its current weights, ``W (1 + alpha U)``."""
        self._arrive(request)
        if self.cfg.minor_updates:
            self.stats["comparisons"] += 1
            if explored and reward > 0:
                generator = torch.Generator().manual_seed(perturbation)
                move_towards(self.q, self.twins.perturb(self.cfg.alpha, generator), self.cfg.eta)
                self.stats["explore_wins"] += 1
        self._record(request, [chosen], np.array([reward], dtype=np.float64))

    def finish_user(self, user: int, now: float) -> None:
        """End a user's pending transition now (no next visit will complete it)."""
        pending = self.pending.pop(user, None)
        self.visits.pop(user, None)
        if pending is not None:
            act = self.cfg.activeness.decayed(pending.activeness, now - pending.time)
            self._remember(pending, act, None)
        self._close_session(user)

    def _record(self, request: Request, positions: list[int], clicks: Floats) -> None:
        """Hold the shown items' transitions until the user's next visit; major update on
        cadence."""
        state, pairs = arrays(request)
        self.pending[request.user] = _Pending(
            state,
            pairs[positions],
            clicks,
            request.time,
            self.visits[request.user][1],
            request.user,
        )
        self.requests += 1
        if self.requests % self.cfg.major_every == 0:
            self.major_update()

    def end_episode(self, now: float) -> None:
        """Users who did not come back: their transitions end, activeness decayed to now."""
        for pending in self.pending.values():
            act = self.cfg.activeness.decayed(pending.activeness, now - pending.time)
            self._remember(pending, act, None)
        self.pending.clear()
        for user in list(self.sessions):
            self._close_session(user)

    # -- learning -------------------------------------------------------------------------
    def _arrive(self, request: Request) -> None:
        act_model = self.cfg.activeness
        seen = self.visits.get(request.user)
        if seen is None:
            activeness = act_model.start
        else:
            activeness = act_model.after_return(seen[1], request.time - seen[0])
        self.visits[request.user] = (request.time, activeness)
        pending = self.pending.pop(request.user, None)
        if pending is not None:
            self._remember(pending, activeness, request)

    def _remember(self, pending: _Pending, activeness: float, nxt: Request | None) -> None:
        if self.cfg.returns == "session":
            self.sessions.setdefault(pending.user, []).append(
                replace(pending, activeness=activeness)
            )
            return
        if nxt is None:
            next_state, next_pairs, alive = (
                np.zeros_like(pending.state),
                np.zeros((1, pending.pairs.shape[1]), np.float32),
                0.0,
            )
        else:
            next_state, next_pairs = arrays(nxt)
            alive = 1.0
        for i in range(len(pending.clicks)):
            reward = float(pending.clicks[i]) + self.cfg.beta * activeness
            self.replay.append(
                (pending.state, pending.pairs[i], reward, next_state, next_pairs, alive)
            )

    def _close_session(self, user: int) -> None:
        """``returns="session"``: each shown item of the user's ended session enters the
        replay memory with its click plus the session's discounted clicks after it."""
        slates = self.sessions.pop(user, [])
        if not slates:
            return
        no_state = np.zeros_like(slates[0].state)
        no_pairs = np.zeros((1, slates[0].pairs.shape[1]), np.float32)
        later = 0.0
        for slate in reversed(slates):
            extra = self.cfg.beta * slate.activeness
            for i in range(len(slate.clicks)):
                target = float(slate.clicks[i]) + extra + self.cfg.gamma * later
                self.replay.append((slate.state, slate.pairs[i], target, no_state, no_pairs, 0.0))
            later = float(slate.clicks.sum()) + extra + self.cfg.gamma * later

    def major_update(self) -> None:
        """Minibatch double-DQN steps on the replay memory, then sync the target network."""
        cfg = self.cfg
        if len(self.replay) < cfg.batch_size:
            return
        for _ in range(cfg.major_steps):
            rows = self.rng.choice(len(self.replay), cfg.batch_size, replace=False)
            batch = [self.replay[int(r)] for r in rows]
            loss = double_dqn_loss(self.q, self.target, batch, cfg.gamma)
            self.opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            self.opt.step()
        self.target.load_state_dict(self.q.state_dict())
        self.stats["major_updates"] += 1


def double_dqn_loss(
    q: DuelingQ,
    target: DuelingQ,
    batch: Sequence[Transition],
    gamma: float,
) -> torch.Tensor:
    """MSE of Q(s, a) against ``r + gamma * alive * Q_target(s', argmax_a' Q(s', a'))``: the
    online network picks the next action, the target network values it."""
    state = torch.from_numpy(np.stack([b[0] for b in batch]))
    pair = torch.from_numpy(np.stack([b[1] for b in batch]))
    reward = torch.tensor([b[2] for b in batch])
    alive = torch.tensor([b[5] for b in batch])
    next_state = torch.from_numpy(np.stack([b[3] for b in batch]))
    widths = np.array([len(b[4]) for b in batch])
    padded = np.zeros((len(batch), int(widths.max()), batch[0][4].shape[1]), np.float32)
    for row, b in enumerate(batch):
        padded[row, : len(b[4])] = b[4]
    next_pairs = torch.from_numpy(padded)
    valid = torch.from_numpy(np.arange(padded.shape[1])[None, :] < widths[:, None])
    with torch.no_grad():
        online = q(next_state, next_pairs).masked_fill(~valid, -torch.inf)
        best = online.argmax(1, keepdim=True)
        next_q = target(next_state, next_pairs).gather(1, best).squeeze(1)
        y = reward + gamma * alive * next_q
    predicted = q(state, pair[:, None, :]).squeeze(1)
    return F.mse_loss(predicted, y)


def _positions(request: Request, shown: Sequence[int]) -> list[int]:
    where = {int(item): pos for pos, item in enumerate(request.candidates)}
    return [where[int(item)] for item in shown]
