"""Where the database credentials come from, and the libpq parameters every connection
string carries: DATABASE_URL or the RDS-shaped secret named by DB_SECRET_ARN, with the
connect timeout, TCP keepalives and client encoding the bundle relies on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from matchstats.config import DatabaseSettings
from matchstats.errors import ConfigurationError, DatabaseUnavailableError

SecretFetcher = Callable[[str], dict[str, Any]]

# Refetched after this long, so rotated credentials reach a warm function.
_SECRET_MAX_AGE_S = 300

# libpq's TCP settings, unless the connection string sets its own. While a statement
# runs, the connection is idle on the wire: keepalives find a vanished server after
# 10 + 3 x 5 = 25 s instead of the kernel's 2 hours. tcp_user_timeout closes a
# connection whose sent data stays unacknowledged for 10 s. (libpq "Parameter Key
# Words": keepalives*, tcp_user_timeout.)
TCP_SETTINGS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
# libpq counts connect_timeout in whole seconds and treats less than 2 as 2.
_MIN_CONNECT_TIMEOUT_S = 2
# Sent in the startup packet, which outranks a role's or database's client_encoding:
# the bundle's messages are Unicode and psycopg must not be asked to encode them otherwise.
CLIENT_ENCODING = "UTF8"


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
    """DATABASE_URL when set, else the RDS-shaped secret named by DB_SECRET_ARN; with the
    connect timeout of the settings and TCP_SETTINGS where the source sets none."""
    timeout = str(settings.db_connect_timeout_s)
    if settings.database_url:
        given = conninfo_to_dict(settings.database_url)
        tcp = {key: value for key, value in TCP_SETTINGS.items() if key not in given}
        return make_conninfo(
            settings.database_url,
            connect_timeout=timeout,
            client_encoding=CLIENT_ENCODING,
            **tcp,
        )
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
        client_encoding=CLIENT_ENCODING,
        application_name="matchstats",
        **TCP_SETTINGS,
    )


def within_budget(conninfo: str, budget_ms: int | None) -> str:
    """The connection string with a connect timeout no longer than the budget."""
    if budget_ms is None:
        return conninfo
    timeout_s = max(_MIN_CONNECT_TIMEOUT_S, budget_ms // 1000)
    given = str(conninfo_to_dict(conninfo).get("connect_timeout") or "")
    if given.isdigit():
        timeout_s = min(timeout_s, max(_MIN_CONNECT_TIMEOUT_S, int(given)))
    return make_conninfo(conninfo, connect_timeout=str(timeout_s))
