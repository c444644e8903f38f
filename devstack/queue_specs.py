"""The bundle's queues as template.yaml declares them (QueueSpec), created in a local SQS
with their redrive policies, and counted.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from devstack.template import load_template, resources_of_type

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

logger = logging.getLogger(__name__)

# SQS defaults, as CloudFormation applies them when a property is absent.
DEFAULT_VISIBILITY_TIMEOUT = 30
DEFAULT_DELAY_SECONDS = 0
DEFAULT_MESSAGE_RETENTION = 345_600

# AWS answers QueueNameExists, moto QueueAlreadyExists, when a name is reused with
# different attributes.
_QUEUE_EXISTS_CODES = frozenset({"QueueNameExists", "QueueAlreadyExists"})


@dataclass(frozen=True)
class QueueSpec:
    """One queue as the template declares it; times in seconds."""

    name: str
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    delay_seconds: int = DEFAULT_DELAY_SECONDS
    message_retention: int = DEFAULT_MESSAGE_RETENTION
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None

    def __post_init__(self) -> None:
        if (self.dead_letter_queue is None) != (self.max_receive_count is None):
            raise ValueError(
                f"{self.name}: dead_letter_queue and max_receive_count go together "
                "(a redrive policy needs both)"
            )
        if self.max_receive_count is not None and not 1 <= self.max_receive_count <= 1000:
            raise ValueError(f"{self.name}: max_receive_count must be 1..1000")

    def attributes(self) -> dict[QueueAttributeNameType, str]:
        """The queue attributes other than the redrive policy, in SQS's string form."""
        return {
            "VisibilityTimeout": str(self.visibility_timeout),
            "DelaySeconds": str(self.delay_seconds),
            "MessageRetentionPeriod": str(self.message_retention),
        }


def create_queues(client: SQSClient, specs: Iterable[QueueSpec]) -> dict[str, str]:
    """Create the queues (or bring existing ones to the spec) and return their URLs by name.

    A redrive policy names its dead-letter queue by ARN, so every dead-letter queue
    is created before the queues that point at it.
    """
    urls: dict[str, str] = {}
    for spec in _dead_letter_queues_first(list(specs)):
        attributes = spec.attributes()
        if spec.dead_letter_queue is not None:
            dlq_url = (
                urls.get(spec.dead_letter_queue)
                or client.get_queue_url(QueueName=spec.dead_letter_queue)["QueueUrl"]
            )
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": queue_arn(client, dlq_url),
                    "maxReceiveCount": spec.max_receive_count,
                }
            )
        urls[spec.name] = _ensure_queue(client, spec.name, attributes)
        logger.info("queue %s ready at %s", spec.name, urls[spec.name])
    return urls


def _dead_letter_queues_first(specs: list[QueueSpec]) -> list[QueueSpec]:
    names = {spec.name for spec in specs}
    ordered: list[QueueSpec] = []
    placed: set[str] = set()
    pending = specs
    while pending:
        # A dead-letter queue outside the specs must already exist; it cannot block.
        ready = [
            spec
            for spec in pending
            if spec.dead_letter_queue is None
            or spec.dead_letter_queue in placed
            or spec.dead_letter_queue not in names
        ]
        if not ready:
            cycle = ", ".join(spec.name for spec in pending)
            raise ValueError(f"dead-letter queues form a cycle: {cycle}")
        ordered.extend(ready)
        placed.update(spec.name for spec in ready)
        pending = [spec for spec in pending if spec.name not in placed]
    return ordered


def _ensure_queue(
    client: SQSClient, name: str, attributes: dict[QueueAttributeNameType, str]
) -> str:
    try:
        return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _QUEUE_EXISTS_CODES:
            raise
    # Same name, other attributes: converge the existing queue so reruns are idempotent.
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def queue_arn(client: SQSClient, queue_url: str) -> str:
    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


@dataclass(frozen=True)
class QueueCounts:
    """SQS's approximate message counts for one queue."""

    visible: int
    not_visible: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.not_visible + self.delayed


def queue_counts(client: SQSClient, queue_url: str) -> QueueCounts:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return QueueCounts(
        visible=int(attributes["ApproximateNumberOfMessages"]),
        not_visible=int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        delayed=int(attributes["ApproximateNumberOfMessagesDelayed"]),
    )


def queue_specs_from_template(path: str | Path) -> list[QueueSpec]:
    """The AWS::SQS::Queue resources of a SAM template, named by logical id.

    Values given as ``!Ref`` to a template parameter resolve to its default, as
    ``sam deploy`` would with no overrides; anything else that cannot be known
    before deployment is an error rather than a guess.
    """
    template = load_template(path)
    parameters: Mapping[str, Any] = template.get("Parameters") or {}
    return [
        _queue_spec(logical_id, resource.get("Properties") or {}, parameters)
        for logical_id, resource in resources_of_type(template, "AWS::SQS::Queue").items()
    ]


def _queue_spec(
    logical_id: str, properties: Mapping[str, Any], parameters: Mapping[str, Any]
) -> QueueSpec:
    def number(name: str, default: int) -> int:
        return _resolve_int(properties.get(name, default), parameters, f"{logical_id}.{name}")

    dead_letter_queue, max_receive_count = _redrive_target(
        properties.get("RedrivePolicy"), parameters, logical_id
    )
    return QueueSpec(
        name=logical_id,
        visibility_timeout=number("VisibilityTimeout", DEFAULT_VISIBILITY_TIMEOUT),
        delay_seconds=number("DelaySeconds", DEFAULT_DELAY_SECONDS),
        message_retention=number("MessageRetentionPeriod", DEFAULT_MESSAGE_RETENTION),
        dead_letter_queue=dead_letter_queue,
        max_receive_count=max_receive_count,
    )


def _redrive_target(
    policy: Any, parameters: Mapping[str, Any], logical_id: str
) -> tuple[str | None, int | None]:
    if not policy:
        return None, None
    if isinstance(policy, str):
        policy = json.loads(policy)
    target = policy.get("deadLetterTargetArn")
    get_att = target.get("Fn::GetAtt") if isinstance(target, dict) else None
    # !GetAtt X.Arn arrives as ["X", "Arn"]; the long form may also spell it "X.Arn".
    if isinstance(get_att, str):
        get_att = get_att.split(".", 1)
    if not (isinstance(get_att, list) and len(get_att) == 2 and get_att[1] == "Arn"):
        raise ValueError(
            f"{logical_id}.RedrivePolicy.deadLetterTargetArn: expected !GetAtt <Queue>.Arn, "
            f"got {target!r}"
        )
    max_receive_count = _resolve_int(
        policy.get("maxReceiveCount"), parameters, f"{logical_id}.RedrivePolicy.maxReceiveCount"
    )
    return str(get_att[0]), max_receive_count


def _resolve_int(value: Any, parameters: Mapping[str, Any], where: str) -> int:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        parameter = parameters.get(value["Ref"]) or {}
        if "Default" not in parameter:
            raise ValueError(f"{where}: parameter {value['Ref']!r} has no default")
        value = parameter["Default"]
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: cannot resolve {value!r} to a whole number") from exc
