"""Where the `matchstats` command finds the queues and the database.

Explicit environment variables win; `--stack NAME` fills in what they leave unset
from the CloudFormation stack's outputs (the four queue URLs) and its DbSecretArn
parameter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from matchstats.config import DatabaseSettings
from matchstats.errors import ConfigurationError


class QueueName(StrEnum):
    """The template's queues, by logical id."""

    POINTS = "PointsQueue"
    POINTS_DLQ = "PointsDeadLetterQueue"
    REFRESH = "RefreshQueue"
    REFRESH_DLQ = "RefreshDeadLetterQueue"


@dataclass(frozen=True)
class QueueSource:
    env: str
    stack_output: str


QUEUE_SOURCES = {
    QueueName.POINTS: QueueSource("POINTS_QUEUE_URL", "PointsQueueUrl"),
    QueueName.POINTS_DLQ: QueueSource("POINTS_DEAD_LETTER_QUEUE_URL", "PointsDeadLetterQueueUrl"),
    QueueName.REFRESH: QueueSource("REFRESH_QUEUE_URL", "RefreshQueueUrl"),
    QueueName.REFRESH_DLQ: QueueSource(
        "REFRESH_DEAD_LETTER_QUEUE_URL", "RefreshDeadLetterQueueUrl"
    ),
}
# The stack parameter that holds the database secret (template.yaml, Parameters).
DB_SECRET_PARAMETER = "DbSecretArn"  # noqa: S105 - a parameter name, not a secret
_DATABASE_VARIABLES = tuple(
    field.alias for field in DatabaseSettings.model_fields.values() if field.alias
)


@dataclass(frozen=True)
class DeadLetterPair:
    """A dead-letter queue and the queue whose failures it holds (where redrive sends)."""

    dead_letter: QueueName
    source: QueueName


DEAD_LETTER_PAIRS = {
    "points": DeadLetterPair(QueueName.POINTS_DLQ, QueueName.POINTS),
    "refresh": DeadLetterPair(QueueName.REFRESH_DLQ, QueueName.REFRESH),
}


class OpsSettings(BaseModel):
    """The command's configuration, read once per run."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    points_queue_url: str | None = Field(default=None, alias="POINTS_QUEUE_URL")
    refresh_queue_url: str | None = Field(default=None, alias="REFRESH_QUEUE_URL")
    points_dead_letter_queue_url: str | None = Field(
        default=None, alias="POINTS_DEAD_LETTER_QUEUE_URL"
    )
    refresh_dead_letter_queue_url: str | None = Field(
        default=None, alias="REFRESH_DEAD_LETTER_QUEUE_URL"
    )
    stack_name: str | None = None
    # The database variables as given: only the commands that need the database
    # validate them, so a dead-letter command runs without any.
    database_environ: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        stack_name: str | None = None,
        stack_outputs: Mapping[str, str] | None = None,
        stack_parameters: Mapping[str, str] | None = None,
    ) -> OpsSettings:
        source = os.environ if environ is None else environ
        # Empty strings mean "not set", as in the functions' settings.
        env = {key: value for key, value in source.items() if value != ""}
        values: dict[str, str] = {}
        for origin in QUEUE_SOURCES.values():
            url = env.get(origin.env) or (stack_outputs or {}).get(origin.stack_output)
            if url:
                values[origin.env] = url
        database_environ = {key: env[key] for key in _DATABASE_VARIABLES if key in env}
        secret_arn = (stack_parameters or {}).get(DB_SECRET_PARAMETER)
        if secret_arn and not env.get("DATABASE_URL") and not env.get("DB_SECRET_ARN"):
            database_environ["DB_SECRET_ARN"] = secret_arn
        return cls.model_validate(
            {**values, "stack_name": stack_name, "database_environ": database_environ}
        )

    def queue_url(self, queue: QueueName) -> str:
        url = {
            QueueName.POINTS: self.points_queue_url,
            QueueName.POINTS_DLQ: self.points_dead_letter_queue_url,
            QueueName.REFRESH: self.refresh_queue_url,
            QueueName.REFRESH_DLQ: self.refresh_dead_letter_queue_url,
        }[queue]
        if not url:
            origin = QUEUE_SOURCES[queue]
            if self.stack_name:
                raise ConfigurationError(
                    f"no URL for {queue.value}: stack {self.stack_name} has no output"
                    f" {origin.stack_output}; set {origin.env}"
                )
            raise ConfigurationError(
                f"no URL for {queue.value}: set {origin.env} or pass --stack NAME"
            )
        return url

    def database(self) -> DatabaseSettings:
        """DATABASE_URL, or DB_SECRET_ARN (from the environment or the stack)."""
        if not {"DATABASE_URL", "DB_SECRET_ARN"} & self.database_environ.keys():
            raise ConfigurationError(
                "no database: set DATABASE_URL or DB_SECRET_ARN, or pass --stack NAME"
                f" (its {DB_SECRET_PARAMETER} parameter)"
            )
        return DatabaseSettings.from_env(self.database_environ)
