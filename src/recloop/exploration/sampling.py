"""Deterministic sampling: the same (event_id, seed) always picks the same action.

This makes every decision replayable and auditable from the log alone.
"""

from __future__ import annotations

import hashlib

from recloop.core.arrays import FloatArray

_SCALE = float(1 << 64)


def uniform_from_event(event_id: str, seed: int) -> float:
    """A uniform number in [0, 1) derived from the event id and the loop's seed."""
    digest = hashlib.blake2b(
        event_id.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "little", signed=True)
    ).digest()
    return int.from_bytes(digest, "little") / _SCALE


def sample_index(probabilities: FloatArray, u: float) -> int:
    """Inverse-CDF sampling; never returns an index with zero probability.

    A plain loop: for the handful of actions of a decision it is several times faster than
    numpy's cumsum + searchsorted."""
    probs: list[float] = probabilities.tolist()
    target = u * sum(probs)
    cumulative = 0.0
    last = -1
    for index, p in enumerate(probs):
        if p <= 0.0:
            continue
        cumulative += p
        last = index
        if target < cumulative:
            return index
    if last < 0:
        raise ValueError("no action has positive probability")
    return last  # u * total rounded up to the very end
