"""CalculatePointsFunction: SQS PointsQueue -> match_points, then one delayed refresh request."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from matchstats.config import PointsSettings
from matchstats.db.connection import ConnectionProvider
from matchstats.db.jobs import JobStore
from matchstats.db.points import PointsStore
from matchstats.observability import logger, metrics, tracer
from matchstats.outcomes import Disposition
from matchstats.points import PointsDependencies, calculate_points
from matchstats.queues import Queues
from matchstats.sqs_records import to_received


@cache
def dependencies() -> PointsDependencies:
    """Built once per execution environment (cold start) and reused while warm."""
    settings = PointsSettings.from_env()
    connections = ConnectionProvider.from_settings(settings)
    return PointsDependencies(
        settings=settings,
        store=PointsStore(connections),
        jobs=JobStore(connections),
        queues=Queues(),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: PointsDependencies | None = None
) -> PartialItemFailureResponse:
    """`deps` lets a test or benchmark hand in its own; Lambda calls with (event, context)."""
    records = [SqsRecordModel.model_validate(raw) for raw in event.get("Records", [])]
    result = calculate_points(
        [to_received(record) for record in records],
        deps if deps is not None else dependencies(),
        remaining_ms=context.get_remaining_time_in_millis,
    )

    metrics.add_metric(
        "PointsMessagesCompleted", MetricUnit.Count, result.count(Disposition.COMPLETED)
    )
    metrics.add_metric(
        "PointsMessagesDeadLettered", MetricUnit.Count, result.count(Disposition.DEAD_LETTERED)
    )
    metrics.add_metric("PointsMessagesRetried", MetricUnit.Count, result.count(Disposition.RETRY))
    metrics.add_metric(
        "PointsMessagesLeftToRedrive", MetricUnit.Count, result.count(Disposition.LEFT_TO_REDRIVE)
    )
    metrics.add_metric("PointsMatchesChanged", MetricUnit.Count, result.matches_changed)

    def record_handler(record: SqsRecordModel) -> None:
        result.raise_if_retry(record.messageId)

    # A processor per invocation: it keeps per-batch state, and the local event source
    # mapping runs several invocations of this module at once in threads. When the whole
    # batch fails it is reported item by item (each with its backoff), not raised.
    processor = BatchProcessor(
        event_type=EventType.SQS, model=SqsRecordModel, raise_on_entire_batch_failure=False
    )
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
