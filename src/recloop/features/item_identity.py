"""What names an item and what identifies its content: the id's bounds, and a hash of the
raw fields that is stable across processes and key order (features are computed once per
content, and an unchanged put recomputes nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from recloop.core.errors import InvalidInputError
from recloop.core.validation import check_item_fields

MAX_ITEM_ID = 256


def content_hash(fields: Mapping[str, Any], where: str = "fields") -> str:
    """Stable across processes and key order: the identity of an item's content. The
    fields are checked first (InvalidInputError naming ``where``), since hashing encodes
    them."""
    check_item_fields(fields, where)
    return hashlib.blake2b(
        orjson.dumps(fields, option=orjson.OPT_SORT_KEYS), digest_size=10
    ).hexdigest()


def check_item_id(item_id: object, where: str) -> None:
    if not isinstance(item_id, str) or not item_id or len(item_id) > MAX_ITEM_ID:
        raise InvalidInputError(f"{where} must be a string of 1-{MAX_ITEM_ID} characters")


def batch_hashes(items: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """The content hash of each item of a put, by id: every id and fields checked first,
    and an id twice in one batch refused (which of the two would win is not defined)."""
    hashes: dict[str, str] = {}
    for i, (item_id, fields) in enumerate(items):
        check_item_id(item_id, f"items[{i}].id")
        if item_id in hashes:
            raise InvalidInputError(f"item {item_id!r} appears twice in one batch")
        if not isinstance(fields, Mapping):
            raise InvalidInputError(f"items[{i}].fields must be an object")
        hashes[item_id] = content_hash(fields, f"items[{i}].fields")
    return hashes
