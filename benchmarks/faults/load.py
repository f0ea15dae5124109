"""A bounded loopback load that behaves like a careful client, and remembers everything.

Rank threads send, at a fixed pace for a fixed time, a rank (with an event id the client
chose, so the audit can find it) and its rewards (0, 1, 1 or 2, each with a reward_id);
event threads send behaviour events, so a stalled rank never holds them back. A request
that fails with a 503 (or 429, 502, 504) or a broken connection is sent again, unchanged
(same ids), to the next server, as a client behind a load balancer would, until it gets
an answer or ``retry_for`` runs out. The server has to make those retries safe: a rank
or a reward it already logged is answered 409 (counted as present, never twice), a
behaviour event already logged is counted in ``duplicates``.

Every attempt is kept (its time, status and latency), so the matrix can say what the
clients saw: the status codes, any 5xx that was not a clean 503 (problem details with
Retry-After), and the longest stall (time with no successful answer at all).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

ACTIONS = [{"id": a, "features": {"topic": a}} for a in ("news", "sports", "music", "films")]
CONNECTION_ERROR = 0
"""The status recorded for an attempt that got no HTTP answer (refused, reset, timeout)."""
RETRY_STATUSES = frozenset({CONNECTION_ERROR, 429, 502, 503, 504})


@dataclass(frozen=True)
class LoadConfig:
    rate: float = 30.0
    """Decisions per second over the rank threads (each with 0-2 rewards)."""
    seconds: float = 8.0
    threads: int = 4
    """Rank threads; with ``events``, half as many threads (at least one) send behaviour
    events, each at a rank thread's pace, so a stalled rank never holds events back."""
    events: bool = True
    retry_for: float = 45.0
    """How long one request is retried before the client gives up on it (longer than the
    longest planned outage, so a fault does not turn into given-up requests)."""
    timeout: float = 10.0


@dataclass(frozen=True)
class Attempt:
    t: float
    """time.monotonic() when the answer (or the error) came."""
    kind: str
    status: int
    latency: float
    clean: bool = True
    """For a 5xx: a 503 with Retry-After and problem details (what a client can act on)."""
    detail: str = ""


@dataclass
class Sent:
    """Records by outcome, per kind: ``decision`` (event id), ``reward`` (``r:ID:RID``),
    ``event`` (behaviour event id)."""

    acked: dict[str, set[str]] = field(default_factory=lambda: _kinds())
    """2xx, or 409 to a retry (a previous attempt was logged)."""
    unknown: dict[str, set[str]] = field(default_factory=lambda: _kinds())
    """Given up on after errors: may or may not be logged."""
    rejected: dict[str, set[str]] = field(default_factory=lambda: _kinds())
    """Refused for good (4xx other than a 409 to a retry): must not be logged."""

    def merge(self, other: Sent) -> None:
        for mine, theirs in (
            (self.acked, other.acked),
            (self.unknown, other.unknown),
            (self.rejected, other.rejected),
        ):
            for kind, keys in theirs.items():
                mine[kind].update(keys)


def _kinds() -> dict[str, set[str]]:
    return {"decision": set(), "reward": set(), "event": set()}


def reward_key(event_id: str, reward_id: str) -> str:
    """The log's dedup key of a reward (as the stores write it)."""
    return f"r:{event_id}:{reward_id}"


def rewards_for(i: int) -> int:
    """0, 1, 1 or 2 rewards per decision, so the joined n_rewards is checked too."""
    return (0, 1, 1, 2)[i % 4]


@dataclass
class LoadResult:
    sent: Sent
    attempts: list[Attempt]
    started: float
    ended: float
    iterations: int
    first_sent: dict[str, float] = field(default_factory=dict)
    """When each record (by key) was first sent."""

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def statuses(self) -> Counter[str]:
        return Counter(
            "conn" if a.status == CONNECTION_ERROR else str(a.status) for a in self.attempts
        )

    def unclean_5xx(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status >= 500 and not a.clean]

    def longest_stall(self) -> float:
        """The longest time within the load with no successful answer."""
        ok = sorted(a.t for a in self.attempts if 200 <= a.status < 300 or a.status == 409)
        marks = [self.started, *ok, max(self.ended, ok[-1] if ok else self.ended)]
        return max((b - a for a, b in itertools.pairwise(marks)), default=0.0)

    def acked_total(self) -> int:
        return sum(len(v) for v in self.sent.acked.values())


class Load:
    """``start()`` the threads, ``join()`` for the result; bounded by ``config.seconds``
    of new work plus the retries of what was in flight."""

    def __init__(self, urls: list[str], config: LoadConfig, prefix: str) -> None:
        self.urls, self.config, self.prefix = list(urls), config, prefix
        total = config.threads + (max(1, config.threads // 2) if config.events else 0)
        self._sent = [Sent() for _ in range(total)]
        self._attempts: list[list[Attempt]] = [[] for _ in range(total)]
        self._iterations = [0] * total
        self._first_sent: list[dict[str, float]] = [{} for _ in range(total)]
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"load-{n}", daemon=True)
            for n in range(total)
        ]
        self._stop = threading.Event()
        self.started = 0.0

    def start(self) -> Load:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """End the load early (each thread finishes the request it is retrying)."""
        self._stop.set()

    def join(self) -> LoadResult:
        for t in self._threads:
            t.join(timeout=self.config.seconds + self.config.retry_for + 30)
        sent = Sent()
        for s in self._sent:
            sent.merge(s)
        attempts = sorted((a for per in self._attempts for a in per), key=lambda a: a.t)
        ended = max(self.started + self.config.seconds, attempts[-1].t if attempts else 0.0)
        first = {k: t for per in self._first_sent for k, t in per.items()}
        return LoadResult(sent, attempts, self.started, ended, sum(self._iterations), first)

    # -- one client thread ---------------------------------------------------------------
    def _run(self, n: int) -> None:
        cfg = self.config
        period = cfg.threads / cfg.rate
        deadline = self.started + cfg.seconds
        with httpx.Client(timeout=cfg.timeout) as client:
            i = 0
            next_at = self.started + period * (n % cfg.threads) / cfg.threads
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    return
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at + period, time.monotonic() - period)  # no bursts
                if n < cfg.threads:
                    self._decision(client, n, i)
                else:
                    self._event(client, n, i)
                self._iterations[n] += 1
                i += 1

    def _decision(self, client: httpx.Client, n: int, i: int) -> None:
        event_id = f"{self.prefix}-t{n}-{i}"
        body: dict[str, Any] = {
            "context": {"user": f"u{(n * 7 + i) % 13}", "hour": i % 24},
            "actions": ACTIONS,
            "event_id": event_id,
        }
        if self._send(client, n, "decision", event_id, "/v1/rank", body) == "acked":
            for k in range(rewards_for(i)):
                reward = {"value": 1.0, "reward_id": f"r{k}"}
                path = f"/v1/events/{event_id}/reward"
                self._send(client, n, "reward", reward_key(event_id, f"r{k}"), path, reward)

    def _event(self, client: httpx.Client, n: int, i: int) -> None:
        event_id = f"b-{self.prefix}-t{n}-{i}"
        event = {
            "user_id": f"u{(n * 7 + i) % 13}",
            "item_id": ACTIONS[i % len(ACTIONS)]["id"],
            "behaviour": "view",
            "timestamp": time.time(),
            "event_id": event_id,
        }
        self._send(client, n, "event", event_id, "/v1/events", [event])

    def _send(self, client: httpx.Client, n: int, kind: str, key: str, path: str, body: Any) -> str:
        """Send until answered (retrying 503s and broken connections); file the outcome."""
        give_up = time.monotonic() + self.config.retry_for
        self._first_sent[n][key] = time.monotonic()
        tries = 0
        while True:
            url = self.urls[(n + tries) % len(self.urls)]
            t0 = time.monotonic()
            status, clean, detail, wait = CONNECTION_ERROR, True, "", 0.2
            try:
                resp = client.post(url + path, json=body)
                status = resp.status_code
                if status >= 500:
                    clean, detail = _clean_503(resp)
                    wait = min(float(resp.headers.get("retry-after", "1") or 1), 2.0)
            except httpx.TransportError as exc:
                detail = type(exc).__name__
            t1 = time.monotonic()
            self._attempts[n].append(Attempt(t1, kind, status, t1 - t0, clean, detail))
            tries += 1
            if status in RETRY_STATUSES:
                if t1 + wait > give_up:
                    self._sent[n].unknown[kind].add(key)
                    return "unknown"
                time.sleep(wait)
                continue
            if 200 <= status < 300 or (status == 409 and tries > 1):
                self._sent[n].acked[kind].add(key)
                return "acked"
            self._sent[n].rejected[kind].add(key)  # e.g. 410 after a long outage
            return "rejected"


def _clean_503(resp: httpx.Response) -> tuple[bool, str]:
    """A 5xx a client can act on: 503, problem details, and a Retry-After, or the type
    ``storage-lost`` (the data dir was deleted under the server: no retry to the same
    process can succeed, so it names no time; its ``/healthz`` fails, and the orchestrator
    restarts it)."""
    problem = resp.status_code == 503 and resp.headers.get("content-type", "").startswith(
        "application/problem+json"
    )
    ok = problem and (
        resp.headers.get("retry-after", "").isdigit()
        or resp.json().get("type", "").endswith("/storage-lost")
    )
    return ok, "" if ok else resp.text[:200]
