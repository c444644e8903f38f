"""Where the database credentials come from, and what a bad source does to a batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from matchstats.config import DatabaseSettings
from matchstats.db.connection import ConnectionProvider, fetch_secret_json, resolve_conninfo
from matchstats.errors import DatabaseUnavailableError

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
