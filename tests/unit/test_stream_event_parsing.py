"""Behaviour events as the OpenAPI describes them (schemathesis found the gaps)."""

from __future__ import annotations

from typing import Any

import pytest

from recloop.core.errors import InvalidInputError
from recloop.streaming.events import MAX_INT_ID, parse_event

BASE = {"user_id": "u", "item_id": "i", "behaviour": "view", "timestamp": 0.0}


@pytest.mark.parametrize(
    "change",
    [
        {"features": []},  # were taken as "no features"
        {"features": ""},
        {"features": 0},
        {"item_id": MAX_INT_ID + 1},  # 2^63 + 1 fits orjson's unsigned 64 bits: accepted
        {"user_id": -(2**63)},
        {"item_id": 1.5},
    ],
)
def test_what_the_schema_refuses_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        parse_event({**BASE, **change}, now=1.0)


@pytest.mark.parametrize(
    "change",
    [{"features": None}, {"event_id": None}, {"item_id": MAX_INT_ID}, {"user_id": -7.0}],
)
def test_what_the_schema_allows_is_taken(change: dict[str, Any]) -> None:
    event = parse_event({**BASE, **change}, now=1.0)
    assert event.user_id in ("u", "-7") and event.event_id
