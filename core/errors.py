"""The error types every port speaks. Adapters translate SDK/driver errors into these so
that no raw SDK exception reaches the domain; each message names the resource."""

from __future__ import annotations


class PortError(Exception):
    """Base of every error an adapter raises on purpose."""

    def __init__(self, message: str, *, resource: str | None = None) -> None:
        super().__init__(message)
        self.resource = resource


class TransientError(PortError):
    """Worth retrying later: network, timeouts, throttling (429), 5xx, lock contention."""

    def __init__(
        self, message: str, *, resource: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, resource=resource)
        self.retry_after = retry_after


class PermanentError(PortError):
    """Retrying cannot help: bad input, missing entity, oversized payload."""


class NotFoundError(PermanentError):
    """The named resource (container, document, queue, blob) does not exist."""


class ConflictError(PortError):
    """Optimistic concurrency lost (etag mismatch, 412) or a create hit an existing id (409)."""


class AuthError(PortError):
    """Credentials missing, expired or refused by the dependency."""


class MessageLockLostError(PortError):
    """The peek-lock on a received message expired or was settled already."""


class PoisonMessageError(Exception):
    """A bus message that can never be processed (not JSON, wrong envelope, unknown schema
    major). Hosts dead-letter it at once with `reason` and `description`."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description
