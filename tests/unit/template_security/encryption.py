"""Encryption at rest: every SQS queue is encrypted (SQS-managed SSE or a KMS key)."""

from __future__ import annotations

from devstack.template import resources_of_type
from tests.unit.template_reading import Template
from tests.unit.template_security import Violation


def unencrypted_queues(template: Template) -> list[str]:
    problems = []
    queues = resources_of_type(template, "AWS::SQS::Queue")
    for queue_id, queue in queues.items():
        properties = queue.get("Properties", {})
        managed = properties.get("SqsManagedSseEnabled") in (True, "true", "True")
        if not managed and not properties.get("KmsMasterKeyId"):
            problems.append(f"{queue_id}: neither SqsManagedSseEnabled nor KmsMasterKeyId")
    if not queues:
        problems.append("no queues found")
    return problems


def _plant_unencrypted_queue(template: Template) -> None:
    del template["Resources"]["RefreshDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]


VIOLATIONS: list[Violation] = [
    ("unencrypted queues", "no SSE", _plant_unencrypted_queue),
]
