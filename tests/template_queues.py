"""The template's queues on the local SQS under fresh names, and each function's environment
pointed at them, for the integration and end-to-end tests. (The whole local stack, functions
included, is devstack.stack.DevStack.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devstack.queue_specs import create_queues, queue_arn, queue_specs_from_template
from matchstats.queues import message_size, pack_requests

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


@dataclass
class TemplateQueues:
    sqs: Any
    urls: dict[str, str]
    arns: dict[str, str]

    @classmethod
    def fresh_queues(cls, sqs: Any) -> TemplateQueues:
        """The template's queues under new names: SQS allows one purge a minute, so each
        test gets empty queues of its own instead."""
        suffix = uuid.uuid4().hex[:8]
        specs = [
            replace(
                spec,
                name=f"{spec.name}-{suffix}",
                dead_letter_queue=spec.dead_letter_queue and f"{spec.dead_letter_queue}-{suffix}",
            )
            for spec in queue_specs_from_template(TEMPLATE)
        ]
        created = create_queues(sqs, specs)
        urls = {name.rsplit("-", 1)[0]: url for name, url in created.items()}
        return cls(sqs=sqs, urls=urls, arns={n: queue_arn(sqs, u) for n, u in urls.items()})

    def depth(self, queue: str) -> dict[str, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.urls[queue],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return {
            "visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
        }

    def drain_all(self, queue: str) -> list[dict[str, Any]]:
        """Receives (and deletes) every message now visible on `queue`."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.urls[queue],
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)
            self.delete(queue, batch)

    def delete(self, queue: str, messages: list[dict[str, Any]]) -> None:
        for chunk in pack_requests(messages):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
            ]
            self.sqs.delete_message_batch(QueueUrl=self.urls[queue], Entries=entries)

    def send(self, queue: str, bodies: list[str]) -> None:
        for chunk in pack_requests(bodies, message_size):
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            self.sqs.send_message_batch(QueueUrl=self.urls[queue], Entries=entries)


def function_environment(
    stack: TemplateQueues, database_url: str, function: str, pooler: str = "none"
) -> dict[str, str]:
    """A function's environment as template.yaml gives it, pointed at the local stack;
    `pooler` is its DB_POOLER (`transaction` when `database_url` goes through PgBouncer)."""
    common = {
        "DATABASE_URL": database_url,
        "DB_POOLER": pooler,
        "AWS_ENDPOINT_URL": stack.sqs.meta.endpoint_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_METRICS_NAMESPACE": "MatchstatsTest",
        "POWERTOOLS_SERVICE_NAME": "matchstats",
        "REFRESH_QUEUE_URL": stack.urls["RefreshQueue"],
    }
    own = {
        "CalculatePointsFunction": {
            "POINTS_QUEUE_URL": stack.urls["PointsQueue"],
            "DEAD_LETTER_QUEUE_URL": stack.urls["PointsDeadLetterQueue"],
            "REFRESH_DELAY_SECONDS": "0",
        },
        "RefreshViewsFunction": {
            "DEAD_LETTER_QUEUE_URL": stack.urls["RefreshDeadLetterQueue"],
        },
        "ScheduledRefreshFunction": {},
    }
    return {**common, **own[function]}
