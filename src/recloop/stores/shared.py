"""What every backend does the same way: the dedup keys that make duplicates detectable,
and the joined-stream iteration built on ``read``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from recloop.core.errors import RecloopError, StoreUnavailableError
from recloop.core.types import Activation, Decision, JoinedExample, Reward
from recloop.log.codec import encode_decision, encode_reward

log = logging.getLogger(__name__)


def decision_key(event_id: str) -> str:
    return "d:" + event_id


def activation_key(event_id: str) -> str:
    return "a:" + event_id


class KeyedAppends:
    """The three appends in terms of one backend-specific ``_append``."""

    def _append(
        self,
        kind: str,
        event_id: str,
        ts: float,
        dedup: str | None,
        body: bytes,
        deferred: bool = False,
    ) -> int:
        raise NotImplementedError

    def append_decision(self, decision: Decision) -> int:
        return self._append(
            "decision",
            decision.event_id,
            decision.timestamp,
            decision_key(decision.event_id),
            encode_decision(decision),
            decision.deferred,
        )

    def append_reward(self, reward: Reward) -> int:
        dedup = None if reward.reward_id is None else f"r:{reward.event_id}:{reward.reward_id}"
        return self._append(
            "reward", reward.event_id, reward.timestamp, dedup, encode_reward(reward)
        )

    def append_activation(self, activation: Activation) -> int:
        return self._append(
            "activation",
            activation.event_id,
            activation.timestamp,
            activation_key(activation.event_id),
            b"{}",
        )


class JoinedIteration:
    """``iter_all`` in terms of the backend's ``read``."""

    def read(self, after: int, limit: int) -> list[JoinedExample]:
        raise NotImplementedError

    def iter_all(self, batch: int = 1000) -> Iterator[JoinedExample]:
        after = 0
        while True:
            chunk = self.read(after, batch)
            if not chunk:
                return
            yield from chunk
            after = chunk[-1].seq


class ExclusiveLog:
    """``exclusive()`` for every backend: reentrant, holds the in-process lock and, when
    ``across_processes``, a database-level lock taken *before* the caller stamps its record
    (``_begin``), so stamp-to-commit stays microseconds however many processes append.
    Typed errors raised inside still commit what was written (dead letters); other errors,
    and a store that failed (``StoreUnavailableError``), roll back. A commit that fails is
    rolled back too: a transaction left open (SQLite keeps one whose COMMIT found the
    database busy) would fail every later ``_begin`` long after the cause had gone.
    Backends provide ``_lock``, ``_depth``, ``_begin`` and ``_end``."""

    _lock: threading.RLock
    _depth: int

    def _begin(self) -> None:
        raise NotImplementedError

    def _end(self, commit: bool) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        try:
            self._end(commit=True)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Roll back after a failure, keeping that failure the one raised: the store may
        have ended the transaction itself (a lost connection, SQLite on a full disk)."""
        try:
            self._end(commit=False)
        except Exception as exc:  # expected when there was no transaction left to end
            log.debug("rollback after a failure: %s", exc)

    @contextmanager
    def exclusive(self, across_processes: bool = True) -> Iterator[None]:
        with self._lock:
            self._depth += 1
            outermost = self._depth == 1 and across_processes
            try:
                if outermost:
                    self._begin()
                try:
                    yield
                except StoreUnavailableError:
                    if outermost:
                        self._abandon()
                    raise
                except RecloopError:
                    if outermost:
                        self._commit()
                    raise
                except BaseException:
                    if outermost:
                        self._abandon()
                    raise
                else:
                    if outermost:
                        self._commit()
            finally:
                self._depth -= 1
