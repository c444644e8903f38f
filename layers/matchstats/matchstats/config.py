"""Configuration of each function, read from its environment once per cold start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from matchstats.errors import ConfigurationError


class _EnvModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        source = os.environ if environ is None else environ
        # Empty strings are how templates say "not set" (a parameter with default "").
        values = {key: value for key, value in source.items() if value != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"bad configuration: {problems}") from exc


class Pooler(StrEnum):
    """What sits between the functions and PostgreSQL (SPEC section 6, DB_POOLER)."""

    # A direct connection: psycopg prepares statements it runs often (plans once).
    NONE = "none"
    # PgBouncer in transaction mode, or RDS Proxy: a server connection is lent for one
    # transaction only, so nothing may outlive one, not even a named prepared statement.
    TRANSACTION = "transaction"


class DatabaseSettings(_EnvModel):
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    db_secret_arn: str | None = Field(default=None, alias="DB_SECRET_ARN")
    db_pooler: Pooler = Field(default=Pooler.NONE, alias="DB_POOLER")
    # The schema that holds the bundle's objects and the application's tables; every
    # transaction of the bundle sets its search_path to it, whatever the role's default.
    db_schema: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        default="public", alias="DB_SCHEMA"
    )
    # Used only for credentials from Secrets Manager (RDS); a DATABASE_URL says its own.
    db_sslmode: str = Field(default="require", alias="DB_SSLMODE")
    db_connect_timeout_s: Annotated[int, Field(ge=1, le=60)] = Field(
        default=5, alias="DB_CONNECT_TIMEOUT_SECONDS"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if not self.database_url and not self.db_secret_arn:
            raise ValueError("set DATABASE_URL or DB_SECRET_ARN")
        return self


class PointsSettings(DatabaseSettings):
    points_queue_url: str = Field(alias="POINTS_QUEUE_URL")
    refresh_queue_url: str = Field(alias="REFRESH_QUEUE_URL")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL")
    refresh_delay_seconds: Annotated[int, Field(ge=0, le=900)] = Field(
        default=1, alias="REFRESH_DELAY_SECONDS"
    )
    # The queue's redrive maxReceiveCount, so the last failed attempt skips its backoff.
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3, alias="MAX_RECEIVE_COUNT"
    )


class RefreshRequestSettings(_EnvModel):
    """Functions that only enqueue refresh requests (schedule, API): no database."""

    refresh_queue_url: str = Field(alias="REFRESH_QUEUE_URL")


class ApiSettings(RefreshRequestSettings):
    # Local use; in AWS the secret comes from Secrets Manager (CRON_SECRET_ARN).
    cron_secret: SecretStr | None = Field(default=None, alias="CRON_SECRET")
    cron_secret_arn: str | None = Field(default=None, alias="CRON_SECRET_ARN")

    @model_validator(mode="after")
    def _one_secret_source(self) -> Self:
        if self.cron_secret is None and not self.cron_secret_arn:
            raise ValueError("set CRON_SECRET or CRON_SECRET_ARN")
        return self


class RefreshSettings(DatabaseSettings):
    """RefreshViewsFunction."""

    refresh_queue_url: str = Field(alias="REFRESH_QUEUE_URL")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL")
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3, alias="MAX_RECEIVE_COUNT"
    )
