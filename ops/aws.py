"""AWS clients for the `matchstats` command, and AWS errors as one readable line.

Credentials, region and endpoint come the usual boto3 ways: AWS_PROFILE or --profile,
AWS_REGION / AWS_DEFAULT_REGION or --region, and AWS_ENDPOINT_URL for the local stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from matchstats.errors import ConfigurationError, QueueUnavailableError
from matchstats.events import EVENTS_CLIENT_CONFIG

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
else:
    SQSClient = Any

# An operator waits at the prompt: fail within seconds rather than retry for a minute.
_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
)
# For calls that probe whether an endpoint supports an operation: one attempt, since
# an emulator that lacks it answers 500, which the standard mode would retry.
_PROBE_CONFIG = _CLIENT_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))


class Aws:
    """Clients built on first use from one boto3 session; a test may hand in its own."""

    def __init__(
        self,
        *,
        profile: str | None = None,
        region: str | None = None,
        sqs: SQSClient | None = None,
        local: Mapping[str, str] | None = None,
    ) -> None:
        """`local`: the variables of a local stack (devstack.devenv), whose endpoint,
        region and dummy credentials then replace whatever this process's own say."""
        self._profile = profile
        # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what Lambda and the other
        # AWS SDKs set, and what the help names, so it counts here too.
        self._region = region or os.environ.get("AWS_REGION") or None
        self._local = dict(local) if local is not None else None
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        if sqs is not None:
            self._clients["sqs"] = sqs
            self._clients["sqs-probe"] = sqs

    @property
    def sqs(self) -> SQSClient:
        client: SQSClient = self._client("sqs", "sqs", _CLIENT_CONFIG)
        return client

    @property
    def sqs_probe(self) -> SQSClient:
        client: SQSClient = self._client("sqs-probe", "sqs", _PROBE_CONFIG)
        return client

    @property
    def cloudwatch(self) -> Any:
        return self._client("cloudwatch", "cloudwatch", _CLIENT_CONFIG)

    @property
    def events(self) -> Any:
        """EventBridge, for the StandingsRefreshed event of a refresh run here: with the
        bounded timeouts and attempts that StandingsEvents' time budget counts on."""
        return self._client("events", "events", EVENTS_CLIENT_CONFIG)

    def stack(self, stack_name: str) -> StackInfo:
        """The stack's outputs and parameters, by key."""
        client = self._client("cloudformation", "cloudformation", _CLIENT_CONFIG)
        try:
            stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
        except (BotoCoreError, ClientError) as exc:
            raise ConfigurationError(f"cannot read stack {stack_name}: {describe(exc)}") from exc
        if not stacks:
            raise ConfigurationError(f"stack {stack_name} does not exist")
        stack = stacks[0]
        return StackInfo(
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
            parameters={
                p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", ""))
                for p in stack.get("Parameters", [])
            },
        )

    def fetch_secret_json(self, secret_arn: str) -> dict[str, Any]:
        """For matchstats.db.conninfo.resolve_conninfo, through this session."""
        client = self._client("secretsmanager", "secretsmanager", _CLIENT_CONFIG)
        try:
            value = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
        except (BotoCoreError, ClientError) as exc:
            raise ConfigurationError(f"cannot read secret {secret_arn}: {describe(exc)}") from exc
        except (KeyError, ValueError) as exc:
            raise ConfigurationError(f"secret {secret_arn} is not a JSON string") from exc
        if not isinstance(value, dict):
            raise ConfigurationError(f"secret {secret_arn} is not a JSON object")
        return value

    def _client(self, key: str, service: str, config: Config) -> Any:
        if key not in self._clients:
            try:
                if self._local is not None:
                    self._clients[key] = self._local_client(service, config)
                    return self._clients[key]
                if self._session is None:
                    self._session = boto3.session.Session(
                        profile_name=self._profile, region_name=self._region
                    )
                self._clients[key] = self._session.client(service, config=config)
            except ProfileNotFound as exc:
                raise ConfigurationError(str(exc)) from exc
            except NoRegionError as exc:
                raise ConfigurationError(
                    "no AWS region: set AWS_REGION or AWS_DEFAULT_REGION, or pass --region;"
                    " for the local stack, start `make dev` (its settings are picked up"
                    " while it runs)"
                ) from exc
        return self._clients[key]

    def _local_client(self, service: str, config: Config) -> Any:
        assert self._local is not None
        local = self._local
        session = boto3.session.Session(
            region_name=local.get("AWS_REGION") or local.get("AWS_DEFAULT_REGION"),
            aws_access_key_id=local.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=local.get("AWS_SECRET_ACCESS_KEY"),
        )
        client: Any = session.client(
            service,  # type: ignore[call-overload]  # one of several service names
            config=config,
            endpoint_url=local.get("AWS_ENDPOINT_URL"),
        )
        return client


@dataclass(frozen=True)
class StackInfo:
    outputs: Mapping[str, str]
    parameters: Mapping[str, str]


def describe(exc: BaseException) -> str:
    """An AWS error as one line that names the problem."""
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (set AWS_PROFILE or pass --profile, or set AWS_ACCESS_KEY_ID)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "error"))
        message = " ".join(str(error.get("Message", "")).split())
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if message.startswith("<") or code == str(status):  # an emulator's HTML error page
            return f"HTTP {status}"
        return f"{code}: {message}" if message and message != code else code
    return " ".join(str(exc).split())


def queue_error(action: str, queue_url: str, exc: BaseException) -> QueueUnavailableError:
    return QueueUnavailableError(f"cannot {action} {queue_label(queue_url)}: {describe(exc)}")


def queue_label(queue_url_or_arn: str) -> str:
    """A queue's name, as its URL (or ARN) ends."""
    if queue_url_or_arn.startswith("arn:"):
        return queue_url_or_arn.rsplit(":", 1)[-1]
    return queue_url_or_arn.rstrip("/").rsplit("/", 1)[-1]
