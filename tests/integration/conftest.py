"""Local SQS fixtures for the integration tier, and the environments the functions under test
and the operator's command run in; the database ones live in tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from calculate_points import app as calculate_points
from devstack.esm import EventSourceMapping, Handler
from devstack.queue_specs import QueueSpec, create_queues, queue_arn
from devstack.sqs import LocalSqs
from matchstats.models import StandingsMode
from refresh_views import app as refresh_views
from scheduled_refresh import app as scheduled_refresh
from tests.conftest import FunctionDatabase, Pooler, forget_refreshes, truncate_all
from tests.template_queues import TemplateQueues, function_environment

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


# --- The functions under test ---------------------------------------------------------
# Each handler builds its dependencies from the environment once per cold start (cached);
# a test that sets the environment clears that cache before and after, for a cold start.
HANDLERS = {
    "CalculatePointsFunction": calculate_points,
    "RefreshViewsFunction": refresh_views,
    "ScheduledRefreshFunction": scheduled_refresh,
}
FunctionEnvironment = Callable[[str, str, Pooler], TemplateQueues]


@pytest.fixture
def function_env(
    monkeypatch: pytest.MonkeyPatch, sqs_client: SQSClient
) -> Iterator[FunctionEnvironment]:
    """`start(function, database_url, pooler)`: fresh copies of the template's queues, and
    `function`'s environment as template.yaml gives it pointed at them and at the database
    (through `pooler`); the function starts cold, and again after the test."""

    def start(function: str, database_url: str, pooler: Pooler = "none") -> TemplateQueues:
        queues = TemplateQueues.fresh_queues(sqs_client)
        for name, value in function_environment(queues, database_url, function, pooler).items():
            monkeypatch.setenv(name, value)
        HANDLERS[function].dependencies.cache_clear()
        return queues

    yield start
    for handler in HANDLERS.values():
        handler.dependencies.cache_clear()


@pytest.fixture
def points_env(
    function_env: FunctionEnvironment, function_database: FunctionDatabase, db: psycopg.Connection
) -> TemplateQueues:
    """CalculatePointsFunction's environment, its database reached directly or through
    PgBouncer (each test runs both ways); empty tables and queues for each test."""
    truncate_all(db)
    return function_env("CalculatePointsFunction", function_database.url, function_database.pooler)


@pytest.fixture
def refresh_env(
    function_env: FunctionEnvironment,
    function_database: FunctionDatabase,
    standings_mode: StandingsMode,
    db: psycopg.Connection,
) -> TemplateQueues:
    """RefreshViewsFunction's environment, its database reached directly or through
    PgBouncer, its standings materialized views or incremental tables (each test runs all
    four ways); empty tables, refresh state and queues."""
    truncate_all(db)
    forget_refreshes(db)
    return function_env("RefreshViewsFunction", function_database.url, function_database.pooler)


# --- The operator's command ---------------------------------------------------------------


@dataclass(frozen=True)
class OperatorStack:
    """The local stack as the operator's command and console see it: the template's
    queues, and the environment an operator sets for them (also in os.environ)."""

    queues: TemplateQueues
    env: dict[str, str]


@pytest.fixture
def operator_stack(
    monkeypatch: pytest.MonkeyPatch,
    local_sqs: LocalSqs,
    function_env: FunctionEnvironment,
    database_url: str,
    db: psycopg.Connection,
) -> OperatorStack:
    """Empty tables, no refresh yet and fresh queues; the environment an operator would set
    for the local stack, which is also CalculatePointsFunction's (for processing what the
    command sends)."""
    truncate_all(db)
    forget_refreshes(db)
    queues = function_env("CalculatePointsFunction", database_url, "none")
    env = {
        **local_sqs.environment(),
        **function_environment(queues, database_url, "CalculatePointsFunction"),
        "POINTS_DEAD_LETTER_QUEUE_URL": queues.urls["PointsDeadLetterQueue"],
        "REFRESH_DEAD_LETTER_QUEUE_URL": queues.urls["RefreshDeadLetterQueue"],
    }
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return OperatorStack(queues, env)
