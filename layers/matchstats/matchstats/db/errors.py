"""Translates psycopg errors into matchstats' permanent/transient split."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from matchstats.config import Pooler
from matchstats.errors import DatabaseUnavailableError

# Errors where the same statement may well succeed on a later delivery.
_RETRYABLE = (
    psycopg.OperationalError,  # connection refused or lost, server shutting down, timeouts
    pg_errors.QueryCanceled,  # statement_timeout
    pg_errors.LockNotAvailable,  # lock_timeout
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,  # a serializable default isolation somewhere upstream
    pg_errors.ReadOnlySqlTransaction,  # a standby, until a failover completes
)


def translate(exc: psycopg.Error, *, pooler: Pooler | None = None) -> DatabaseUnavailableError:
    """The error as a DatabaseUnavailableError whose message names its kind and SQLSTATE.

    Every database error is retried: the message must not be lost to a bug or a missing
    migration, and SQS dead-letters it after 3 receives if it keeps failing.
    """
    kind = "database unavailable" if isinstance(exc, _RETRYABLE) else "database error"
    sqlstate = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = ""
    if isinstance(exc, pg_errors.InvalidSqlStatementName) and pooler is not Pooler.TRANSACTION:
        hint = " (behind PgBouncer in transaction mode or RDS Proxy? set DB_POOLER=transaction)"
    return DatabaseUnavailableError(f"{kind}{sqlstate}: {first_line}{hint}")
