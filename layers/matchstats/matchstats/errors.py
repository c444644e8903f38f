"""Failures split by what retrying can do about them.

A permanent failure will fail the same way on every delivery, so its message goes
straight to the dead-letter queue with the reason attached. A transient failure
(database or queue unreachable, a timeout, a lock) may pass on a later delivery,
so its message is retried with backoff and dead-lettered by SQS after 3 receives.
"""

from __future__ import annotations

from typing import ClassVar


class MatchstatsError(Exception):
    """Base of every error matchstats raises on purpose; `kind` is a stable,
    machine-readable reason code (job_history.error_kind, matchstats.errorKind)."""

    kind: ClassVar[str] = "error"


class ConfigurationError(MatchstatsError):
    """The function's environment is missing or has a bad setting."""


class PermanentError(MatchstatsError):
    """Retrying cannot help."""

    kind = "permanent"


class InvalidMessageError(PermanentError):
    kind = "invalid_message"


class MatchNotFoundError(PermanentError):
    kind = "match_not_found"


class MissingScoresError(PermanentError):
    kind = "missing_scores"


class TransientError(MatchstatsError):
    """May pass on a later attempt."""

    kind = "transient"


class DatabaseUnavailableError(TransientError):
    """The database could not be reached, or the statement timed out or hit a lock."""

    kind = "database_unavailable"


class QueueUnavailableError(TransientError):
    """A message could not be sent to, or changed on, a queue."""

    kind = "queue_unavailable"


class DeadlineError(TransientError):
    """Too little of the invocation's time is left to finish safely."""

    kind = "deadline"


class UnexpectedError(TransientError):
    """An error nobody foresaw, of any type: its batch is retried with backoff rather than
    the invocation failing (SPEC section 4)."""

    kind = "unexpected"
