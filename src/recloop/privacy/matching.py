"""Which logged decisions name a user, and what a user id may be.

Decision contexts are free-form JSON (Personalizer's are a list of feature objects), so a
loop names the places that hold the user's id (``LoopSettings.user_fields``: dotted
paths, looked up in the context, or in each element of a list context). A value names the
user when it is the id as a string, or an integer equal to it (``42`` for ``"42"``).

Stores first narrow their scan with :meth:`UserMatcher.needle`, bytes that every encoded
decision naming the user contains (the codec writes JSON with orjson, so the id appears
as orjson writes it), and then decode and check only the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from recloop.core.errors import InvalidInputError

MAX_USER_ID = 256
RESERVED = frozenset({"*popular*"})
"""Ids the stream keeps its own rows under: forgetting one would delete the popular list."""


def check_user_id(user_id: str) -> str:
    """A user id from outside: 1-256 printable characters, not a reserved name."""
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID:
        raise InvalidInputError(f"user_id must be 1-{MAX_USER_ID} characters")
    if not user_id.isprintable():
        raise InvalidInputError("user_id must be printable characters")
    if user_id in RESERVED:
        raise InvalidInputError(f"user_id {user_id!r} is reserved")
    return user_id


class UserMatcher:
    """Finds one user's id at the loop's ``user_fields`` in a decision context."""

    def __init__(self, user_id: str, fields: Sequence[str]) -> None:
        self.user_id = check_user_id(user_id)
        self.paths = [tuple(f.split(".")) for f in fields]
        self._int: int | None = None
        if user_id.lstrip("-").isdigit() and len(user_id) <= 20:
            self._int = int(user_id)

    def needle(self) -> bytes:
        """Bytes every encoded context naming the user contains: the id as orjson writes
        it inside a string (an integer equal to it is the same digits)."""
        return orjson.dumps(self.user_id)[1:-1]

    def _equal(self, value: object) -> bool:
        if isinstance(value, str):
            return value == self.user_id
        if isinstance(value, int) and not isinstance(value, bool):
            return self._int is not None and value == self._int
        return False

    def _at(self, node: object, path: tuple[str, ...]) -> bool:
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return self._equal(node)

    def matches(self, context: Any) -> bool:
        """Whether the context names the user at one of the paths."""
        elements = context if isinstance(context, list) else [context]
        return any(self._at(e, p) for e in elements for p in self.paths)

    def matches_body(self, body: bytes) -> bool:
        """The same for an encoded decision (the log's body): its ``context``."""
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return isinstance(raw, dict) and self.matches(raw.get("context"))


__all__ = ["MAX_USER_ID", "UserMatcher", "check_user_id"]
