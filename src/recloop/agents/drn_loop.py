"""DRN inside the decision loop: a learner the loop's pipeline feeds with joined decisions,
and the policy its model versions serve (``learner = "drn"`` in a loop's settings).

Requests are the loop's JSON: the context is hashed into the state vector, each action's
features and id into its pair vector (:mod:`recloop.features.hashing`), so any feature map
works without a schema. The loop's explorer explores and logs as for every policy; the
learner makes DRN's minor update (DBGD, credited on the logged outcome) on every joined
decision, its major update (double DQN on replay) every ``major_every``, and the pipeline
publishes versions on the loop's checkpoint cadence, which servers pick up as they do VW's.
A context field (``user_key``, default ``user_id``) links a user's consecutive decisions
into transitions, with the activeness of their return in the reward; decisions without it
are one-step episodes.

A version is ``MAGIC`` + a safetensors file of both networks' weights (``q.*``,
``target.*``) with the JSON header in its metadata. Loading runs no code, and is several
times faster than the ``torch.save`` format of earlier versions (``MAGIC_V1``, still read,
with ``weights_only=True``), whose Python unpickling held the GIL requests wait for (the
README's figures). A restarted pipeline resumes the networks from its newest version; the
replay memory starts empty again.

It lives under ``agents`` because it is PyTorch code: nothing outside ``agents`` imports
torch (``.importlinter``); the loop reaches it through its model kind
(``recloop.kinds.models``), which imports it only when a loop's learner is ``drn``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import safetensors.torch
import torch

from recloop.agents.dbgd import EXPLORE, Twins, interleave, lead_probabilities
from recloop.agents.drn import DRN, DRNConfig, DuelingQ, _inputs
from recloop.agents.formats import DRN_MAGIC
from recloop.agents.loop_params import (
    MAX_HIDDEN,
    MAX_SAMPLES,
    MAX_WIDTH,
    check_bounds,
    check_params,
)
from recloop.core.arrays import FloatArray
from recloop.core.errors import InvalidInputError, ModelRejectedError
from recloop.core.interaction import Request
from recloop.core.protocols import Draw
from recloop.core.types import Action, Context, GeneratedFeatures, JoinedExample, available_actions
from recloop.features.hashing import FeatureHasher, Floats

MAGIC = DRN_MAGIC + b"2\n"
"""Versions written now: safetensors."""
MAGIC_V1 = DRN_MAGIC + b"1\n"
"""Versions written before: ``torch.save``."""
KIND = "drn"
LOOP_KEYS = {"context_dim": 64, "action_dim": 64, "user_key": "user_id", "exploration": "loop"}
"""Settings of the loop's DRN beside DRNConfig's hyperparameters."""
EXPLORATIONS = ("loop", "interleave")
"""``loop``: the loop's explorer over Q (the learner makes DBGD's minor update
counterfactually, on the logged outcome). ``interleave``: the paper's exploration at the
decision point, by :class:`InterleavingDRNPolicy`."""
_TUNABLE = {f.name for f in dataclasses.fields(DRNConfig)} - {"activeness", "seed", "returns"}
"""``returns="session"`` needs sessions that end, which the loop's decisions do not mark."""


@dataclasses.dataclass(frozen=True)
class DRNSpec:
    """What a DRN version needs besides its weights: the hashing widths, the user field,
    the hyperparameters."""

    context_dim: int
    action_dim: int
    user_key: str
    config: DRNConfig
    exploration: str = "loop"

    @classmethod
    def from_params(cls, params: Mapping[str, Any], seed: int = 0) -> DRNSpec:
        """Checked: unknown names and wrong types are errors naming the parameter."""
        params = dict(params)
        config = dataclasses.asdict(DRNConfig())
        check_params("drn", params, {**LOOP_KEYS, **{k: config[k] for k in _TUNABLE}})
        loop = {k: params.pop(k, v) for k, v in LOOP_KEYS.items()}
        if loop["exploration"] not in EXPLORATIONS:
            raise InvalidInputError(f"drn.exploration must be one of {list(EXPLORATIONS)}")
        return cls(
            int(loop["context_dim"]),
            int(loop["action_dim"]),
            str(loop["user_key"]),
            DRNConfig(**params, seed=seed),
            str(loop["exploration"]),
        ).checked()

    def checked(self) -> DRNSpec:
        """Sizes in range (a version's header is checked by this too, before a network of
        the declared size is built)."""
        c = self.config
        check_bounds(
            "drn",
            {
                "context_dim": (self.context_dim, 1, MAX_WIDTH),
                "action_dim": (self.action_dim, 1, MAX_WIDTH),
                "hidden": (c.hidden, 1, MAX_HIDDEN),
                "batch_size": (c.batch_size, 1, MAX_SAMPLES),
                "replay_size": (c.replay_size, 1, MAX_SAMPLES),
            },
        )
        return self

    def header(self) -> dict[str, Any]:
        config = dataclasses.asdict(self.config)
        config.pop("activeness")
        return {
            "context_dim": self.context_dim,
            "action_dim": self.action_dim,
            "user_key": self.user_key,
            "config": config,
            "exploration": self.exploration,
        }

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> DRNSpec:
        return cls(
            int(header["context_dim"]),
            int(header["action_dim"]),
            str(header["user_key"]),
            DRNConfig(**header["config"]),
            str(header.get("exploration", "loop")),  # versions before it explored by loop
        )


class _Encoder:
    """The loop's JSON as DRN's arrays (shared by the policy and the learner). Action
    vectors are cached by content (bounded), as VW's action lines are: a catalogue's items
    come back request after request with the same features.

    The cache is shared by every encoder of the same width in the process: a vector depends
    on the features and the width only, and a new model version arriving every checkpoint
    must not start cold: the first rank after each new version was several times slower
    (README, "Measurements behind the code")."""

    MAX_CACHED_ACTIONS = 100_000
    _shared: ClassVar[dict[int, dict[tuple[Any, ...], Floats]]] = {}

    def __init__(self, spec: DRNSpec) -> None:
        self.context = FeatureHasher(spec.context_dim)
        self.action = FeatureHasher(spec.action_dim)
        self._actions = _Encoder._shared.setdefault(spec.action_dim, {})

    def _action(self, action: Action) -> Floats:
        features = action.features
        try:
            if type(features) is GeneratedFeatures and features.key:
                key: tuple[Any, ...] = (action.id, features.key)  # a catalogue item's content
            else:
                key = (action.id, *features.items())
            cached = self._actions.get(key)
        except TypeError:  # list-valued or nested features: not hashable, build each time
            return self.action.vector(action.features, {"id": action.id})
        if cached is None:
            if len(self._actions) >= self.MAX_CACHED_ACTIONS:
                self._actions.clear()
            cached = self._actions[key] = self.action.vector(action.features, {"id": action.id})
        return cached

    def request(
        self, context: Context, actions: Sequence[Action], user: int, time: float
    ) -> Request:
        m = len(actions)
        return Request(
            user=user,
            time=time,
            user_features=self.context.vector(context),
            context=np.zeros(0),
            candidates=np.arange(m, dtype=np.int64),
            item_features=np.stack([self._action(a) for a in actions]),
            cross_features=np.zeros((m, 0)),
        )


def _load(blob: bytes) -> tuple[DRNSpec, dict[str, Any], dict[str, Any]]:
    """(spec, header, {"q": weights, "target": weights}) of either format."""
    try:
        if blob.startswith(MAGIC):
            body = blob[len(MAGIC) :]
            tensors = safetensors.torch.load(body)
            header = json.loads(_safetensors_metadata(body)["header"])
            payload: dict[str, Any] = {"q": {}, "target": {}}
            for name, tensor in tensors.items():
                net, _, key = name.partition(".")
                payload[net][key] = tensor
        elif blob.startswith(MAGIC_V1):
            payload = torch.load(io.BytesIO(blob[len(MAGIC_V1) :]), weights_only=True)
            header = json.loads(payload["header"])
        else:
            raise ModelRejectedError("not a DRN model version")
        spec = DRNSpec.from_header(header).checked()
    except ModelRejectedError:
        raise
    except Exception as exc:  # truncated, corrupt or from an incompatible version
        raise ModelRejectedError(f"DRN model version could not be read: {exc}") from exc
    return spec, header, payload


def _safetensors_metadata(body: bytes) -> dict[str, str]:
    """The metadata of a safetensors file in memory (its layout: an 8-byte little-endian
    header length, then the JSON header, which holds ``__metadata__``)."""
    size = int.from_bytes(body[:8], "little")
    metadata: dict[str, str] = json.loads(body[8 : 8 + size])["__metadata__"]
    return metadata


def _network(spec: DRNSpec, weights: Mapping[str, torch.Tensor]) -> DuelingQ:
    net = DuelingQ(spec.context_dim, spec.action_dim, spec.config.hidden)
    try:
        net.load_state_dict(weights)
    except (RuntimeError, KeyError) as exc:
        raise ModelRejectedError(f"DRN weights do not fit the network: {exc}") from exc
    return net


class DRNPolicy:
    """Serves a DRN version: scores = Q(s, a) of the greedy network."""

    name = KIND

    def __init__(self, spec: DRNSpec, q: DuelingQ, version: str) -> None:
        self.spec, self.version = spec, version
        self._q = q.eval().requires_grad_(False)
        self._encoder = _Encoder(spec)

    @classmethod
    def from_bytes(cls, blob: bytes, version: str) -> DRNPolicy:
        spec, _, payload = _load(blob)
        if spec.exploration not in EXPLORATIONS:
            raise ModelRejectedError(f"DRN version explores by {spec.exploration!r}")
        kind = InterleavingDRNPolicy if spec.exploration == "interleave" else cls
        policy = kind(spec, _network(spec, payload["q"]), version)
        probe = policy.scores({"probe": 1.0}, [Action("a", {}), Action("b", {"x": 1.0})])
        if not np.isfinite(probe).all():
            raise ModelRejectedError("DRN model predicts non-finite scores")
        return policy

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        request = self._encoder.request(context, actions, 0, 0.0)
        state = torch.as_tensor(request.user_features, dtype=torch.float32)
        pairs = torch.as_tensor(request.item_features, dtype=torch.float32)
        with torch.no_grad():
            q = self._q(state[None], pairs[None])[0]
        scores: FloatArray = q.numpy().astype(np.float64)
        return scores


class InterleavingDRNPolicy(DRNPolicy):
    """DRN exploring as the paper does, at the decision point: W's ranking and a perturbed
    W~'s (``W (1 + alpha U)``, U drawn from the decision's uniform number) are interleaved
    probabilistically, and the lead (the loop's chosen action) is drawn from them. Its
    probability is exact given the perturbation (:func:`~recloop.agents.dbgd.
    lead_probabilities`); the decision records which list it came from and the
    perturbation's seed, so the learner credits the right network (``learn_interleaved``)."""

    def __init__(self, spec: DRNSpec, q: DuelingQ, version: str) -> None:
        super().__init__(spec, q, version)
        self._twins = Twins(self._q)
        self._twins_lock = threading.Lock()  # one perturbation buffer, many request threads

    def draw(self, context: Context, actions: Sequence[Action], u: float) -> Draw:
        seed = int(u * 2.0**53)
        request = self._encoder.request(context, actions, 0, 0.0)
        with self._twins_lock, torch.no_grad():
            self._twins.perturb(self.spec.config.alpha, torch.Generator().manual_seed(seed))
            advantages = self._twins.forward(self._q.advantage, "advantage", _inputs(request))
        greedy, explore = torch.argsort(advantages[..., 0], descending=True).tolist()
        tau = self.spec.config.interleave_tau
        lead = interleave(greedy, explore, 1, np.random.default_rng(seed), tau)
        source = "perturbed" if lead.source[0] == EXPLORE else "greedy"
        probabilities = lead_probabilities(greedy, explore, tau)
        greedy_advantages = advantages[0, :, 0].numpy().astype(np.float64)  # Q less V(s)
        return Draw(
            probabilities,
            lead.items[0],
            greedy_advantages,
            {"list": source, "perturbation": seed},
        )


class DRNLearner:
    """The pipeline's learner when ``learner = "drn"``: one joined decision at a time."""

    kind = KIND

    def __init__(self, spec: DRNSpec, state: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self.agent = DRN(spec.context_dim, spec.action_dim, 1, spec.config)
        if state is not None:
            self.agent.q.load_state_dict(state["q"])
            self.agent.target.load_state_dict(state["target"])
        self._encoder = _Encoder(spec)
        self._lock = threading.Lock()
        self._anonymous = -1
        self.examples_learned = 0

    @classmethod
    def from_bytes(cls, blob: bytes, params: Mapping[str, Any], seed: int = 0) -> DRNLearner:
        """Resume from a version; the loop's current parameters apply from here on, as
        long as the network's shape (hashing widths, hidden size) is unchanged."""
        old, _, payload = _load(blob)
        spec = DRNSpec.from_params(params, seed)
        shape = (spec.context_dim, spec.action_dim, spec.config.hidden)
        if shape != (old.context_dim, old.action_dim, old.config.hidden):
            raise ModelRejectedError("the DRN's shape changed: it starts afresh")
        return cls(spec, payload)

    @property
    def args(self) -> str:
        return json.dumps(self.spec.header(), sort_keys=True)

    def _user(self, context: Context) -> tuple[int, bool]:
        value = context.get(self.spec.user_key)
        if value is None or isinstance(value, Mapping | list | tuple):
            self._anonymous -= 1  # a fresh id: a one-step episode
            return self._anonymous, False
        return zlib.crc32(str(value).encode()), True

    def learn_one(self, example: JoinedExample) -> None:
        d = example.decision
        acts = available_actions(d.actions, d.excluded)
        chosen = next(i for i, a in enumerate(acts) if a.id == d.chosen)
        user, known = self._user(d.context)
        request = self._encoder.request(d.context, acts, user, d.timestamp)
        record = d.exploration or {}
        source, seed = record.get("list"), record.get("perturbation")
        with self._lock:
            if isinstance(source, str) and isinstance(seed, int):  # served by interleaving
                explored = source == "perturbed"
                self.agent.learn_interleaved(request, chosen, example.reward, explored, seed)
            else:
                self.agent.learn_logged(request, chosen, example.reward, d.probability)
            if not known:
                self.agent.finish_user(user, d.timestamp)
        self.examples_learned += 1

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        with self._lock:
            q = self.agent.scores(self._encoder.request(context, actions, 0, 0.0))
        out: FloatArray = q.numpy().astype(np.float64)
        return out

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.agent.stats)

    def snapshot(self) -> bytes:
        with self._lock:
            tensors = {
                f"{net}.{key}": value.detach().clone()
                for net, module in (("q", self.agent.q), ("target", self.agent.target))
                for key, value in module.state_dict().items()
            }
            body = safetensors.torch.save(
                tensors, metadata={"header": json.dumps(self.spec.header())}
            )
        return MAGIC + body

    def close(self) -> None:
        """Nothing to release (VW's learner has a workspace to finish)."""
