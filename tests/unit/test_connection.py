"""Where the database credentials come from, and what a bad source does to a batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from matchstats.config import DatabaseSettings, Pooler
from matchstats.db.connection import ConnectionProvider
from matchstats.db.conninfo import TCP_SETTINGS, fetch_secret_json, resolve_conninfo
from matchstats.db.errors import translate
from matchstats.errors import ConfigurationError, DatabaseUnavailableError, TransientError

ARN_SETTINGS = DatabaseSettings.from_env({"DB_SECRET_ARN": "arn:aws:secretsmanager:x:1:secret:db"})


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_an_rds_shaped_secret_becomes_a_connection_string(secrets: Any) -> None:
    # Given the secret RDS writes for a database
    arn = secrets.create_secret(
        Name="matchstats-db",
        SecretString=json.dumps(
            {
                "host": "db.internal",
                "port": 5433,
                "username": "app",
                "password": "pw",
                "dbname": "stats",
            }
        ),
    )["ARN"]
    settings = DatabaseSettings.from_env({"DB_SECRET_ARN": arn})

    # When the connection string is resolved
    conninfo = resolve_conninfo(settings)

    # Then it names that database, over TLS
    for part in ("host=db.internal", "port=5433", "user=app", "dbname=stats", "sslmode=require"):
        assert part in conninfo


def test_a_secret_that_cannot_be_read_fails_the_batch_as_a_transient_error(secrets: Any) -> None:
    # When the secret does not exist (or Secrets Manager cannot be reached)
    with pytest.raises(DatabaseUnavailableError, match="cannot read the database secret"):
        fetch_secret_json("arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")


def test_a_secret_without_a_host_is_a_transient_connection_failure_not_a_crash() -> None:
    # Given a secret that lacks the host
    provider = ConnectionProvider(
        lambda: resolve_conninfo(ARN_SETTINGS, lambda arn: {"username": "app", "password": "pw"})
    )

    # When a connection is asked for, Then the error names what is missing
    with pytest.raises(DatabaseUnavailableError, match="lacks host"):
        provider.get()


def test_a_connection_string_gets_keepalives_and_a_tcp_user_timeout() -> None:
    # Given a DATABASE_URL that says nothing about TCP
    settings = DatabaseSettings.from_env({"DATABASE_URL": "postgresql://app@db.internal/stats"})

    # When the connection string is resolved
    params = conninfo_to_dict(resolve_conninfo(settings))

    # Then libpq finds a dead peer itself: keepalives and tcp_user_timeout are on
    assert {key: params[key] for key in TCP_SETTINGS} == TCP_SETTINGS
    assert params["connect_timeout"] == "5"


def test_a_connection_string_keeps_its_own_tcp_settings() -> None:
    # Given a DATABASE_URL that sets its own keepalive idle time
    url = "postgresql://app@db.internal/stats?keepalives_idle=60&tcp_user_timeout=0"
    settings = DatabaseSettings.from_env({"DATABASE_URL": url})

    # When the connection string is resolved, Then its own values stand
    params = conninfo_to_dict(resolve_conninfo(settings))
    assert params["keepalives_idle"] == "60"
    assert params["tcp_user_timeout"] == "0"
    assert params["keepalives_count"] == TCP_SETTINGS["keepalives_count"]


def test_db_pooler_says_which_mode_and_refuses_anything_else() -> None:
    base = {"DATABASE_URL": "postgresql://app@db/stats"}
    assert DatabaseSettings.from_env(base).db_pooler is Pooler.NONE
    assert DatabaseSettings.from_env({**base, "DB_POOLER": "transaction"}).db_pooler is (
        Pooler.TRANSACTION
    )
    with pytest.raises(ConfigurationError, match="DB_POOLER"):
        DatabaseSettings.from_env({**base, "DB_POOLER": "session"})


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (pg_errors.SerializationFailure, "database unavailable [40001]"),
        (pg_errors.DeadlockDetected, "database unavailable [40P01]"),
        (pg_errors.ReadOnlySqlTransaction, "database unavailable [25006]"),
        (pg_errors.LockNotAvailable, "database unavailable [55P03]"),
        (pg_errors.UndefinedTable, "database error [42P01]"),
    ],
)
def test_every_database_error_is_transient_and_names_its_sqlstate(
    error: type[psycopg.Error], kind: str
) -> None:
    # When a database error is translated, Then the batch is retried (transient) and the
    # message says which kind of error it was
    translated = translate(error("something happened"))
    assert isinstance(translated, TransientError)
    assert str(translated).startswith(kind), translated


def test_a_vanished_prepared_statement_names_the_pooler_setting() -> None:
    # Given a prepared statement that PgBouncer in transaction mode lost
    error = pg_errors.InvalidSqlStatementName('prepared statement "_pg3_0" does not exist')

    # Then the error tells the operator what to set, unless it is set already
    assert "set DB_POOLER=transaction" in str(translate(error))
    assert "DB_POOLER" not in str(translate(error, pooler=Pooler.TRANSACTION))
