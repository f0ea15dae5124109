"""Typed errors. The web tier maps each to an RFC 9457 problem-details response."""

from __future__ import annotations


class RecloopError(Exception):
    """Base of every error recloop raises on purpose."""

    status: int = 500
    kind: str = "internal-error"
    title: str = "Internal error"
    retry_after: int | None = None
    """Seconds after which the same request may succeed (HTTP ``Retry-After``), if ever."""


class InvalidInputError(RecloopError, ValueError):
    """The caller sent something recloop cannot use (bad types, NaN, empty actions...)."""

    status = 422
    kind = "invalid-input"
    title = "Invalid input"


class MalformedJSONError(RecloopError, ValueError):
    """The body is not valid JSON (or JSON lines)."""

    status = 400
    kind = "malformed-json"
    title = "Malformed JSON"


class StreamDisabledError(RecloopError):
    """The behaviour stream is switched off in this server's settings."""

    status = 404
    kind = "stream-disabled"
    title = "Stream disabled"


class PayloadTooLargeError(RecloopError):
    """The request body exceeds the configured limit."""

    status = 413
    kind = "payload-too-large"
    title = "Payload too large"


class UnknownLoopError(RecloopError, KeyError):
    """No loop with that name is configured on this server."""

    status = 404
    kind = "unknown-loop"
    title = "Unknown loop"

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else self.title


class UnknownEventError(RecloopError, KeyError):
    """A reward or activation names an event id that was never logged."""

    status = 404
    kind = "unknown-event"
    title = "Unknown event"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.title


class ExpiredEventError(RecloopError):
    """A reward or activation arrived after the event's experimental-unit window closed."""

    status = 410
    kind = "expired-event"
    title = "Event window closed"


class DuplicateEventError(RecloopError):
    """A decision with this event id is already logged, or a reward id was seen before."""

    status = 409
    kind = "duplicate-event"
    title = "Duplicate event"


class UnknownModelError(RecloopError, KeyError):
    """No model version with that name is in the model store."""

    status = 404
    kind = "unknown-model"
    title = "Unknown model version"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.title


class ModelRejectedError(RecloopError):
    """A model version is corrupt or incompatible with the loop; the previous one keeps serving."""

    status = 422
    kind = "model-rejected"
    title = "Model rejected"


class UnknownPolicyError(RecloopError, KeyError):
    """No candidate policy of that name exists."""

    status = 404
    kind = "unknown-policy"
    title = "Unknown policy"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.title


class UnknownPolicyKindError(InvalidInputError, KeyError):
    """A request or setting names a policy kind that does not exist: the input is wrong
    (422), not a missing resource (404, as for a candidate name that is not registered)."""

    status = 422
    kind = "unknown-policy-kind"
    title = "Unknown policy kind"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.title


class UnauthorizedError(RecloopError):
    """The API key is missing or wrong."""

    status = 401
    kind = "unauthorized"
    title = "Unauthorized"


class UnknownItemError(InvalidInputError, KeyError):
    """Actions given by id alone name items the catalogue does not hold."""

    status = 422
    kind = "unknown-item"
    title = "Unknown item"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.title


class ItemNotFoundError(RecloopError, KeyError):
    """No catalogue item with that id (GET / DELETE /v1/items/{id})."""

    status = 404
    kind = "unknown-item"
    title = "Unknown item"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.title


class StorageLostError(RecloopError):
    """The loop's log file is no longer the one this process opened (its data directory
    was deleted or replaced): nothing more is acknowledged until the server restarts."""

    status = 503
    kind = "storage-lost"
    title = "Storage lost"


class StoreUnavailableError(RecloopError):
    """A store could not do its work just now: the database is restarting or unreachable,
    locked past its busy timeout, or out of disk. Nothing was acknowledged; the same
    request may be sent again after ``retry_after`` seconds (the stores reconnect by
    themselves). ``reason`` names the cause for the metrics (``store_errors_total``)."""

    status = 503
    kind = "store-unavailable"
    title = "Store unavailable"
    retry_after: int | None = 1

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class RateLimitedError(RecloopError):
    """The caller (its API key, or its address) spent its rate limit; the same request may
    go after ``retry_after`` seconds."""

    status = 429
    kind = "rate-limited"
    title = "Too many requests"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ForbiddenError(RecloopError):
    """The API key is valid but lacks the scope the route needs (a rank key on an admin
    route)."""

    status = 403
    kind = "forbidden"
    title = "Forbidden"


class DuplicateKeyError(RecloopError):
    """An API key of that name exists and is not revoked."""

    status = 409
    kind = "duplicate-key"
    title = "Duplicate key"


class UnknownKeyError(RecloopError, KeyError):
    """No active API key of that name."""

    status = 404
    kind = "unknown-key"
    title = "Unknown key"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.title


class LeaseBusyError(RecloopError):
    """Another process runs this loop's pipeline (join, learn) on the same data. Here, not
    in ``learning.lease``: the stores raise it too (PostgreSQL's advisory lock), and they
    import nothing of ``learning``."""

    status = 409
    kind = "pipeline-busy"
    title = "Pipeline busy"


class LeaseLostError(RecloopError):
    """This process's pipeline lease went away under it (its database session ended)."""

    status = 503
    kind = "pipeline-lease-lost"
    title = "Pipeline lease lost"
