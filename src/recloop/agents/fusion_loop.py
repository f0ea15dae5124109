"""The score-fusion DDPG inside the decision loop (``learner = "fusion"`` in a loop's
settings): a policy that ranks by ``click * (pay + a * phi)`` with the weight ``a`` its
actor picks for the context, and the learner the loop's pipeline feeds.

* **Requests** are the loop's JSON. Each candidate carries its predictions as features
  (``click``, ``pay``, ``phi``; the names are settings); the context is hashed into the
  state vector (:mod:`recloop.features.hashing`).
* **Exploration** is the agent's own: Gaussian noise on ``a`` (``noise_sigma``), clipped
  to the range the version allows. Which candidate leads then has an exact probability
  (:mod:`recloop.exploration.weight_noise`), which the loop logs as for every policy, with
  the served weight and its density (``Decision.exploration``). So its decisions are evaluated
  off-policy like any other's, and the learner learns from the weight that was served.
  (The simulator agent's Ornstein-Uhlenbeck noise is correlated across requests: a
  decision's probability would depend on the ones before it.)
* **Learning** is :class:`~recloop.agents.fusion_ddpg.FusionDDPG`'s single-agent update
  (V and a quadratic A head, then the actor) on ``(state, served a, reward)``, every
  ``train_every`` joined decisions. Decisions served by another policy (before the first
  version) carry no weight and are skipped, counted in ``stats``.
* **Safety**: a version allows ``a`` to leave 1 by ``max_step`` at first, by the whole
  range once ``warmup_requests`` decisions were learned from, and the actor does not move
  before ``actor_delay``.

A version is ``MAGIC`` + a safetensors file of the networks with a JSON header in its
metadata (no code runs on load). It lives under ``agents`` because it is PyTorch code; the
loop reaches it through its model kind (``recloop.kinds.models``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import safetensors.torch
import torch

from recloop.agents.formats import FUSION_MAGIC
from recloop.agents.fusion_ddpg import FusionDDPGConfig, FusionNetworks, actor_loss, critic_losses
from recloop.agents.loop_params import (
    MAX_HIDDEN,
    MAX_SAMPLES,
    MAX_WIDTH,
    check_bounds,
    check_params,
)
from recloop.core.arrays import FloatArray
from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.core.protocols import Draw
from recloop.core.types import Action, Context, JoinedExample
from recloop.exploration.weight_noise import WeightNoise, draw, leader_probabilities
from recloop.features.hashing import FeatureHasher

MAGIC = FUSION_MAGIC + b"1\n"
KIND = "fusion"
LOOP_KEYS: dict[str, Any] = {
    "context_dim": 64,
    "click_feature": "click",
    "pay_feature": "pay",
    "phi_feature": "phi",
}
"""Settings of the loop's fusion agent beside the agent's hyperparameters."""
_TUNABLE = (
    "a_min", "a_max", "hidden", "noise_sigma", "warmup_requests", "max_step", "actor_delay",
    "actor_learning_rate", "learning_rate", "train_every", "train_steps", "batch_size",
    "replay_size",
)  # fmt: skip
"""The simulator agent's multi-agent A/B split, control bucket, OU noise, reward shaping
(which needs a request's clicks) and bootstrapping (``gamma``: the loop's decisions are
independent requests) have no meaning here."""
IN_LOOP_DEFAULTS: dict[str, Any] = {
    "noise_sigma": 0.5,
    "actor_delay": 1000,
    "warmup_requests": 1000,
    "actor_learning_rate": 0.01,
}
"""Where the loop's defaults differ from the simulator agent's: Gaussian noise explores
less than the OU noise of the same sigma (whose spread is 1.8 times it) and decisions come
slower than simulator requests. The agent's defaults left the weights within 0.15 of 1
after 6,000 decisions of ``tests/unit/test_fusion_loop.py``'s shop; these reach 0.3 and
3.6 (the best: 0.3 and 3)."""


@dataclasses.dataclass(frozen=True)
class FusionSpec:
    """What a version needs besides its weights: the hashing width, the feature names,
    the hyperparameters."""

    context_dim: int
    click_feature: str
    pay_feature: str
    phi_feature: str
    config: FusionDDPGConfig

    @classmethod
    def from_params(cls, params: Mapping[str, Any], seed: int = 0) -> FusionSpec:
        """Checked: unknown names, wrong types and impossible values are input errors."""
        config = dataclasses.asdict(FusionDDPGConfig())
        check_params("fusion", params, {**LOOP_KEYS, **{k: config[k] for k in _TUNABLE}})
        loop = {k: params.get(k, v) for k, v in LOOP_KEYS.items()}
        tuned = {**IN_LOOP_DEFAULTS, **{k: v for k, v in params.items() if k in _TUNABLE}}
        spec = cls(
            int(loop["context_dim"]),
            str(loop["click_feature"]),
            str(loop["pay_feature"]),
            str(loop["phi_feature"]),
            FusionDDPGConfig(**tuned, seed=seed),
        )
        spec._check()
        return spec

    def _check(self) -> None:
        """Sizes and numbers in range (a version's header is checked by this too, before a
        network of the declared size is built)."""
        c = self.config
        big = float(2**53)
        check_bounds(
            "fusion",
            {
                "context_dim": (self.context_dim, 1, MAX_WIDTH),
                "hidden": (c.hidden, 1, MAX_HIDDEN),
                "a_min": (c.a_min, -big, big),
                "a_max": (c.a_max, -big, big),
                "batch_size": (c.batch_size, 1, MAX_SAMPLES),
                "replay_size": (c.replay_size, c.batch_size, MAX_SAMPLES),
                "train_every": (c.train_every, 1, big),
                "train_steps": (c.train_steps, 1, 10_000),
                "learning_rate": (c.learning_rate, 1e-12, 10.0),
                "actor_learning_rate": (c.actor_learning_rate, 1e-12, 10.0),
                "max_step": (c.max_step, 0.0, big),
                "warmup_requests": (c.warmup_requests, 0, big),
                "actor_delay": (c.actor_delay, 0, big),
            },
        )
        if not c.a_min < 1.0 < c.a_max:
            raise InvalidInputError("fusion: the range [a_min, a_max] must contain 1")
        check_bounds("fusion", {"noise_sigma": (c.noise_sigma, 0.0, c.a_max - c.a_min)})

    def header(self) -> dict[str, Any]:
        return {
            "context_dim": self.context_dim,
            "click_feature": self.click_feature,
            "pay_feature": self.pay_feature,
            "phi_feature": self.phi_feature,
            "config": dataclasses.asdict(self.config),
        }

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> FusionSpec:
        return cls(
            int(header["context_dim"]),
            str(header["click_feature"]),
            str(header["pay_feature"]),
            str(header["phi_feature"]),
            FusionDDPGConfig(**header["config"]),
        )

    def allowed(self, learned: int) -> tuple[float, float]:
        """The served weight's range after ``learned`` decisions: near 1 at first, the
        whole range after the warm-up (``FusionDDPG.allowed``'s schedule)."""
        c = self.config
        grow = min(1.0, learned / max(1, c.warmup_requests))
        reach = c.max_step + grow * max(c.a_max - 1.0, 1.0 - c.a_min)
        return max(c.a_min, 1.0 - reach), min(c.a_max, 1.0 + reach)


def score_lines(spec: FusionSpec, actions: Sequence[Action]) -> tuple[FloatArray, FloatArray]:
    """Each candidate's score as a line in ``a``: ``click * pay + a * click * phi``."""
    values = np.empty((len(actions), 3))
    names = (spec.click_feature, spec.pay_feature, spec.phi_feature)
    for i, action in enumerate(actions):
        for j, name in enumerate(names):
            value = action.features.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(
                    f"action {action.id!r}: the fusion policy needs a number in features.{name}"
                )
            values[i, j] = value
    if not np.isfinite(values).all():
        raise InvalidInputError(f"the fusion policy's features {list(names)} must be finite")
    click, pay, phi = values.T
    return click * pay, click * phi


class FusionPolicy:
    """Serves a version: scores at the actor's weight; explores by noise on the weight."""

    name = KIND

    def __init__(
        self, spec: FusionSpec, nets: FusionNetworks, allowed: tuple[float, float], version: str
    ) -> None:
        self.spec, self.version = spec, version
        self._nets = nets.eval().requires_grad_(False)
        self._hasher = FeatureHasher(spec.context_dim)
        self.noise = WeightNoise(spec.config.noise_sigma, *allowed)

    @classmethod
    def from_bytes(cls, blob: bytes, version: str) -> FusionPolicy:
        spec, header, weights = _load(blob)
        policy = cls(spec, _networks(spec, weights), _allowed(header), version)
        if not np.isfinite(policy.mean_weight({"probe": 1.0})):
            raise ModelRejectedError("fusion model gives a non-finite weight")
        return policy

    def mean_weight(self, context: Context) -> float:
        """The actor's weight for this context (before noise)."""
        state = torch.as_tensor(self._hasher.vector(context), dtype=torch.float32)[None]
        with torch.no_grad():
            return float(self._nets.action(self._nets.encoder(state), 0)[0])

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        intercepts, slopes = score_lines(self.spec, actions)
        a = min(max(self.mean_weight(context), self.noise.low), self.noise.high)
        out: FloatArray = intercepts + a * slopes
        return out

    def distribution(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        intercepts, slopes = score_lines(self.spec, actions)
        return leader_probabilities(intercepts, slopes, self.mean_weight(context), self.noise)

    def draw(self, context: Context, actions: Sequence[Action], u: float) -> Draw:
        intercepts, slopes = score_lines(self.spec, actions)
        mean = self.mean_weight(context)
        chosen, weight = draw(intercepts, slopes, mean, self.noise, u)
        served_mean = min(max(mean, self.noise.low), self.noise.high)
        return Draw(
            leader_probabilities(intercepts, slopes, mean, self.noise),
            chosen,
            intercepts + served_mean * slopes,  # what scores() gives
            {"weight": weight, "density": self.noise.density(mean, weight)},
        )


class FusionLearner:
    """The pipeline's learner when ``learner = "fusion"``: one joined decision at a time."""

    kind = KIND

    def __init__(
        self,
        spec: FusionSpec,
        weights: Mapping[str, torch.Tensor] | None = None,
        learned: tuple[int, int] = (0, 0),
    ) -> None:
        """``learned``: (examples, those with a weight) of the version resumed from."""
        self.spec = spec
        cfg = spec.config
        torch.manual_seed(cfg.seed)
        self.nets = FusionNetworks(spec.context_dim, cfg)
        if weights is not None:
            self.nets.load_state_dict(weights)
        critic = [*self.nets.encoder.parameters(), *self.nets.value.parameters(),
                  *self.nets.advantages.parameters()]  # fmt: skip
        self.critic_opt = torch.optim.Adam(critic, lr=cfg.learning_rate)
        self.actor_opt = torch.optim.Adam(self.nets.actors.parameters(), lr=cfg.actor_learning_rate)
        self.replay: deque[tuple[FloatArray, float, float]] = deque(maxlen=cfg.replay_size)
        self.rng = np.random.default_rng(cfg.seed)
        self._hasher = FeatureHasher(spec.context_dim)
        self._lock = threading.Lock()
        self.examples_learned = learned[0]
        self.stats = {"learned": learned[1], "skipped_without_weight": 0, "train_steps": 0}
        """``learned`` (decisions with a weight) drives the warm-up; it survives a resume."""

    @classmethod
    def from_bytes(cls, blob: bytes, params: Mapping[str, Any], seed: int = 0) -> FusionLearner:
        """Resume from a version (the replay memory starts empty); the loop's parameters
        apply from here on while the networks' shape is unchanged."""
        old, header, weights = _load(blob)
        spec = FusionSpec.from_params(params, seed)
        if (spec.context_dim, spec.config.hidden) != (old.context_dim, old.config.hidden):
            raise ModelRejectedError("the fusion agent's shape changed: it starts afresh")
        _networks(spec, weights)  # weights that do not fit are a rejected version
        return cls(spec, weights, (int(header["learned"]), int(header["learned_with_weight"])))

    @property
    def args(self) -> str:
        return json.dumps(self.spec.header(), sort_keys=True)

    def learn_one(self, example: JoinedExample) -> None:
        weight = (example.decision.exploration or {}).get("weight")
        self.examples_learned += 1
        if not isinstance(weight, float):  # served by another policy: no weight to learn
            self.stats["skipped_without_weight"] += 1
            return
        state = self._hasher.vector(example.decision.context)
        with self._lock:
            self.replay.append((state, float(weight), float(example.reward)))
            self.stats["learned"] += 1
            if self.stats["learned"] % self.spec.config.train_every == 0:
                self._train()

    def _train(self) -> None:
        cfg = self.spec.config
        if len(self.replay) < cfg.batch_size:
            return
        for _ in range(cfg.train_steps):
            rows = self.rng.choice(len(self.replay), cfg.batch_size, replace=False)
            batch = [self.replay[int(r)] for r in rows]
            state = torch.as_tensor(np.stack([b[0] for b in batch]), dtype=torch.float32)
            action = torch.tensor([b[1] for b in batch], dtype=torch.float32)
            ret = torch.tensor([b[2] for b in batch], dtype=torch.float32)
            v_loss, a_loss = critic_losses(self.nets, state, action, ret, 0)
            self.critic_opt.zero_grad()
            (v_loss + a_loss).backward()  # type: ignore[no-untyped-call]
            self.critic_opt.step()
            if self.stats["learned"] >= cfg.actor_delay:
                self.actor_opt.zero_grad()
                actor_loss(self.nets, state, 0).backward()  # type: ignore[no-untyped-call]
                self.actor_opt.step()
            self.stats["train_steps"] += 1

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        intercepts, slopes = score_lines(self.spec, actions)
        state = torch.as_tensor(self._hasher.vector(context), dtype=torch.float32)[None]
        with self._lock, torch.no_grad():
            a = float(self.nets.action(self.nets.encoder(state), 0)[0])
            low, high = self.spec.allowed(self.stats["learned"])
        out: FloatArray = intercepts + min(max(a, low), high) * slopes  # as its version serves
        return out

    def snapshot(self) -> bytes:
        with self._lock:
            tensors = {k: v.detach().clone() for k, v in self.nets.state_dict().items()}
            low, high = self.spec.allowed(self.stats["learned"])
            header = {**self.spec.header(), "learned": self.examples_learned}
            header["learned_with_weight"] = self.stats["learned"]
            header["allowed"] = [low, high]
        return MAGIC + safetensors.torch.save(tensors, metadata={"header": json.dumps(header)})

    def close(self) -> None:
        """Nothing to release."""


def _load(blob: bytes) -> tuple[FusionSpec, dict[str, Any], dict[str, torch.Tensor]]:
    if not blob.startswith(MAGIC):
        raise ModelRejectedError("not a fusion model version")
    body = blob[len(MAGIC) :]
    try:
        weights = safetensors.torch.load(body)
        size = int.from_bytes(body[:8], "little")
        header = json.loads(json.loads(body[8 : 8 + size])["__metadata__"]["header"])
        spec = FusionSpec.from_header(header)
        spec._check()
        _allowed(header)
        int(header["learned"]), int(header["learned_with_weight"])
    except Exception as exc:  # truncated, corrupt or from an incompatible version
        raise ModelRejectedError(f"fusion model version could not be read: {exc}") from exc
    return spec, header, weights


def _allowed(header: Mapping[str, Any]) -> tuple[float, float]:
    low, high = (float(x) for x in header["allowed"])
    if not (np.isfinite([low, high]).all() and low <= 1.0 <= high):
        raise ModelRejectedError(f"fusion model's allowed range [{low}, {high}] is not valid")
    return low, high


def _networks(spec: FusionSpec, weights: Mapping[str, torch.Tensor]) -> FusionNetworks:
    nets = FusionNetworks(spec.context_dim, spec.config)
    try:
        nets.load_state_dict(weights)
    except (RuntimeError, KeyError) as exc:
        raise ModelRejectedError(f"fusion weights do not fit the network: {exc}") from exc
    return nets
