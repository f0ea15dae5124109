"""Saved agents: one zip that serves without the training code.

The zip holds ``meta.json`` (format, algorithm, hyperparameters, catalogue and user ids,
history length), ``users.npy`` (the user vectors the scorer takes), ``scorer.pt2``: the
agent's scorer exported with ``torch.export`` (a graph with its weights; loading it needs
torch, not the class that trained it), and ``candidates.pt2``: the same scorer for a given
candidate list only (what serving a ranking request needs). Loading checks everything it
can and names what is wrong: a checkpoint for another algorithm, catalogue or history
length, or whose two scorers disagree, is rejected, never served as a silently wrong model.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from recloop.agents.formats import is_agent_checkpoint
from recloop.agents.networks import CandidateScorer, top_k
from recloop.core.errors import InvalidInputError, ModelRejectedError

if TYPE_CHECKING:  # loading a checkpoint imports no agent code
    from recloop.agents.base import Agent

FORMAT = "recloop-agent/1"


@dataclass(frozen=True)
class SavedAgent:
    meta: dict[str, Any]
    user_vectors: torch.Tensor
    scorer: nn.Module
    candidate_scorer: nn.Module

    @property
    def algo(self) -> str:
        return str(self.meta["algo"])

    @property
    def user_ids(self) -> list[str]:
        return list(self.meta["user_ids"])

    @property
    def item_ids(self) -> list[str]:
        return list(self.meta["item_ids"])

    @property
    def last_n(self) -> int:
        return int(self.meta["last_n"])

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])

    @torch.no_grad()
    def scores(self, user_vectors: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.scorer(user_vectors, history)
        return out

    @torch.no_grad()
    def candidate_scores(
        self, user_vectors: torch.Tensor, history: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """(rows, C) scores of the items (rows, C) only: the catalogue scores at them."""
        out: torch.Tensor = self.candidate_scorer(user_vectors, history, items)
        return out

    def rank(
        self,
        user: NDArray[np.int64],
        history: NDArray[np.int64],
        k: int = 10,
        exclude_history: bool = False,
    ) -> NDArray[np.int64]:
        """Top-k item indices per row, as the trained agent ranked them (``Agent.rank``)."""
        h = torch.as_tensor(history)
        scores = self.scores(self.user_vectors[torch.as_tensor(user)], h)
        return top_k(scores, h, k, exclude_history)


def save_agent(
    agent: Agent,
    user_ids: list[str],
    item_ids: list[str],
    last_n: int,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The agent as zip bytes (for a file or a model store version)."""
    if len(item_ids) != agent.n_items or len(user_ids) != agent.n_users:
        raise InvalidInputError(
            f"the agent knows {agent.n_users} users and {agent.n_items} items; "
            f"{len(user_ids)} user ids and {len(item_ids)} item ids were given"
        )
    scorer = agent.scorer().eval()
    users = agent.user_vectors().detach().float()
    example = (users[:2].clone(), torch.full((2, last_n), agent.n_items, dtype=torch.long))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    exported = torch.export.export(scorer, example, dynamic_shapes=({0: batch}, {0: batch}))
    program = io.BytesIO()
    torch.export.save(exported, program)
    items = torch.zeros((2, min(2, agent.n_items)), dtype=torch.long)
    width = torch.export.Dim("candidates", min=1, max=1 << 24)
    exported = torch.export.export(
        CandidateScorer(scorer),
        (*example, items),
        dynamic_shapes=({0: batch}, {0: batch}, {0: batch, 1: width}),
    )
    candidates = io.BytesIO()
    torch.export.save(exported, candidates)
    meta = {
        "format": FORMAT,
        "algo": agent.algo,
        "n_users": agent.n_users,
        "n_items": agent.n_items,
        "last_n": last_n,
        "user_dim": int(users.shape[1]),
        "hyperparameters": agent.hyperparameters(),
        "user_ids": list(user_ids),
        "item_ids": list(item_ids),
        **(extra or {}),
    }
    vectors = io.BytesIO()
    np.save(vectors, users.numpy(), allow_pickle=False)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("users.npy", vectors.getvalue())
        z.writestr("scorer.pt2", program.getvalue())
        z.writestr("candidates.pt2", candidates.getvalue())
    return out.getvalue()


def load_agent(blob: bytes, *, algo: str | None = None, n_items: int | None = None) -> SavedAgent:
    """Load and check a saved agent; ``algo``/``n_items`` are what the caller expects."""
    if not is_agent_checkpoint(blob):
        raise ModelRejectedError("not a recloop agent checkpoint (no zip with meta.json)")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            meta = json.loads(z.read("meta.json"))
            users_raw = z.read("users.npy")
            program = z.read("scorer.pt2")
            candidates = z.read("candidates.pt2")
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelRejectedError(f"not a recloop agent checkpoint: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ModelRejectedError(f"checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    if algo is not None and meta["algo"] != algo:
        raise ModelRejectedError(f"checkpoint is a {meta['algo']!r} agent, expected {algo!r}")
    if n_items is not None and meta["n_items"] != n_items:
        raise ModelRejectedError(
            f"checkpoint was trained on {meta['n_items']} items, expected {n_items}"
        )
    users: NDArray[np.float32] = np.load(io.BytesIO(users_raw), allow_pickle=False)
    if users.shape != (meta["n_users"], meta["user_dim"]) or len(meta["user_ids"]) != len(users):
        raise ModelRejectedError(
            f"checkpoint user vectors have shape {users.shape}, meta says "
            f"{meta['n_users']} x {meta['user_dim']}"
        )
    if len(meta["item_ids"]) != meta["n_items"]:
        raise ModelRejectedError("checkpoint item ids do not match its catalogue size")
    try:
        scorer = torch.export.load(io.BytesIO(program)).module()
        candidate_scorer = torch.export.load(io.BytesIO(candidates)).module()
        probe = torch.full((1, meta["last_n"]), meta["n_items"], dtype=torch.long)
        some = torch.arange(min(5, meta["n_items"]))[None, :]
        with torch.no_grad():
            out = scorer(torch.as_tensor(users[:1]), probe)
            picked = candidate_scorer(torch.as_tensor(users[:1]), probe, some)
    except Exception as exc:  # any failure means the model cannot serve
        raise ModelRejectedError(f"checkpoint scorer does not load or run: {exc}") from exc
    if tuple(out.shape) != (1, meta["n_items"]):
        raise ModelRejectedError(
            f"checkpoint scorer gives {tuple(out.shape)} scores, expected (1, {meta['n_items']})"
        )
    if not torch.allclose(picked, out[:, : some.shape[1]], rtol=1e-4, atol=1e-5):
        raise ModelRejectedError("checkpoint candidate scorer disagrees with its catalogue scorer")
    return SavedAgent(meta, torch.as_tensor(users), scorer, candidate_scorer)
