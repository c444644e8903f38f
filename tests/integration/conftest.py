"""Local SQS fixtures for the integration tier; the database ones live in tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from devstack.esm import EventSourceMapping, Handler
from devstack.sqs import LocalSqs, QueueSpec, create_queues, queue_arn

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# Short enough that a redelivery test waits seconds, long enough that a quick handler
# always deletes before its message reappears.
TEST_VISIBILITY_TIMEOUT_S = 2
TEST_MAX_RECEIVE_COUNT = 3


@pytest.fixture(scope="module")
def local_sqs() -> Iterator[LocalSqs]:
    """moto's SQS on 127.0.0.1 for one test module, in an account of its own."""
    with LocalSqs() as sqs:
        yield sqs


@pytest.fixture(scope="module")
def sqs_client(local_sqs: LocalSqs) -> SQSClient:
    return local_sqs.client()


@dataclass(frozen=True)
class RedrivenQueue:
    """A source queue and the dead-letter queue its redrive policy points at."""

    name: str
    url: str
    arn: str
    dead_letter_url: str
    max_receive_count: int


@pytest.fixture
def make_queue(sqs_client: SQSClient) -> Callable[..., RedrivenQueue]:
    """Create a fresh, uniquely named queue with a DLQ after 3 receives."""

    def make(visibility_timeout: int = TEST_VISIBILITY_TIMEOUT_S) -> RedrivenQueue:
        name = f"test-{uuid.uuid4().hex[:12]}"
        urls = create_queues(
            sqs_client,
            [
                QueueSpec(
                    name=name,
                    visibility_timeout=visibility_timeout,
                    dead_letter_queue=f"{name}-dlq",
                    max_receive_count=TEST_MAX_RECEIVE_COUNT,
                ),
                QueueSpec(name=f"{name}-dlq"),
            ],
        )
        return RedrivenQueue(
            name=name,
            url=urls[name],
            arn=queue_arn(sqs_client, urls[name]),
            dead_letter_url=urls[f"{name}-dlq"],
            max_receive_count=TEST_MAX_RECEIVE_COUNT,
        )

    return make


@pytest.fixture
def start_mapping(sqs_client: SQSClient) -> Iterator[Callable[..., EventSourceMapping]]:
    """Start event source mappings; every one still running is stopped after the test."""
    started: list[EventSourceMapping] = []

    def start(queue: RedrivenQueue, handler: Handler, **options: Any) -> EventSourceMapping:
        options.setdefault("timeout_s", TEST_VISIBILITY_TIMEOUT_S)
        mapping = EventSourceMapping(sqs_client, queue.url, queue.arn, handler, **options)
        started.append(mapping)
        return mapping.start()

    yield start
    for mapping in started:
        mapping.stop()
