"""Database connections: where the credentials come from, and one live connection per
execution environment, reused across invocations."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from matchstats.config import DatabaseSettings
from matchstats.errors import ConfigurationError, DatabaseUnavailableError

SecretFetcher = Callable[[str], dict[str, Any]]

# Refetched after this long, so rotated credentials reach a warm function.
_SECRET_MAX_AGE_S = 300


def fetch_secret_json(secret_arn: str) -> dict[str, Any]:
    """Secrets Manager through Powertools Parameters (cached, JSON-decoded)."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import (
        GetParameterError,
        TransformParameterError,
    )

    try:
        value = parameters.get_secret(secret_arn, transform="json", max_age=_SECRET_MAX_AGE_S)
    except (GetParameterError, TransformParameterError) as exc:
        # Throttled, unreachable, or missing: the batch is retried and, if it persists,
        # dead-lettered, rather than the invocation failing as a whole.
        raise DatabaseUnavailableError(
            f"cannot read the database secret {secret_arn}: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"secret {secret_arn} is not a JSON object")
    return value


def resolve_conninfo(
    settings: DatabaseSettings, fetch_secret: SecretFetcher = fetch_secret_json
) -> str:
    """DATABASE_URL when set, else the RDS-shaped secret named by DB_SECRET_ARN."""
    timeout = str(settings.db_connect_timeout_s)
    if settings.database_url:
        return make_conninfo(settings.database_url, connect_timeout=timeout)
    assert settings.db_secret_arn  # DatabaseSettings guarantees one of the two
    secret = fetch_secret(settings.db_secret_arn)
    missing = [key for key in ("host", "username", "password") if not secret.get(key)]
    if missing:
        raise ConfigurationError(
            f"secret {settings.db_secret_arn} lacks {', '.join(missing)} (RDS JSON shape expected)"
        )
    return make_conninfo(
        host=str(secret["host"]),
        port=str(secret.get("port", 5432)),
        user=str(secret["username"]),
        password=str(secret["password"]),
        dbname=str(secret.get("dbname", "postgres")),
        sslmode=settings.db_sslmode,
        connect_timeout=timeout,
        application_name="matchstats",
    )


def connect(conninfo: str) -> psycopg.Connection:
    """Autocommit, so that transactions are exactly the `with conn.transaction()` blocks."""
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc


class ConnectionProvider:
    """One connection per thread, opened on first use and reopened after it broke.

    In Lambda a process serves one invocation at a time, so this is one connection per
    execution environment; the local event source mapping runs one worker per thread.
    """

    def __init__(
        self, conninfo: Callable[[], str], opener: Callable[[str], psycopg.Connection] = connect
    ):
        self._conninfo = conninfo
        self._opener = opener
        self._local = threading.local()

    def get(self) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            try:
                conninfo = self._conninfo()
            except ConfigurationError as exc:
                # A secret without a host, say: no connection, so the batch is retried
                # (and dead-lettered if it persists) like any other unreachable database.
                raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc
            conn = self._opener(conninfo)
            self._local.conn = conn
        return conn

    def release_after_error(self) -> None:
        """Drops this thread's connection if an error left it unusable or mid-transaction;
        a connection that merely saw a statement fail and rolled back is kept."""
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        status = psycopg.pq.TransactionStatus
        if not (conn.closed or conn.broken) and conn.info.transaction_status != status.IDLE:
            # A statement failed inside an explicit transaction: end it and keep the
            # connection, unless even that fails.
            with contextlib.suppress(psycopg.Error):
                conn.execute(b"ROLLBACK")
        if conn.closed or conn.broken or conn.info.transaction_status != status.IDLE:
            self._local.conn = None
            conn.close()
