"""Catalogue features as fixed-width vectors: the item content the deep RL agents learn
from (``recloop train --item-features``), the same features the bandit sees.

Each item's generated features (nested maps, bags, numbers) are hashed into ``dim`` slots
by :class:`~recloop.features.hashing.FeatureHasher`, the way DRN hashes an action's
features in the loop: no vocabulary to keep, and the same vector in every process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from recloop.core.protocols import ItemStore
from recloop.features.hashing import FeatureHasher

CONTENT_DIM = 128


def item_content(
    store: ItemStore, item_ids: Sequence[str], dim: int = CONTENT_DIM
) -> tuple[NDArray[np.float32], int]:
    """(len(item_ids), dim) content vectors, zero for items the catalogue does not hold;
    and how many it holds."""
    hasher = FeatureHasher(dim)
    out = np.zeros((len(item_ids), dim), dtype=np.float32)
    found = 0
    for row, item_id in enumerate(item_ids):
        record = store.get(item_id)
        if record is not None:
            out[row] = hasher.vector(record.features)
            found += 1
    return out, found
