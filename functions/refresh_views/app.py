"""RefreshViewsFunction: SQS RefreshQueue -> coalesced REFRESH MATERIALIZED VIEW CONCURRENTLY."""

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

from matchstats.config import RefreshSettings
from matchstats.db.connection import ConnectionProvider
from matchstats.db.jobs import JobStore
from matchstats.db.refresh import RefreshStore
from matchstats.observability import logger, metrics, tracer
from matchstats.outcomes import Disposition
from matchstats.queues import Queues
from matchstats.refresh import RefreshDependencies, ViewDecision, refresh_views
from matchstats.sqs_records import to_received


@cache
def dependencies() -> RefreshDependencies:
    """Built once per execution environment (cold start) and reused while warm."""
    settings = RefreshSettings.from_env()
    connections = ConnectionProvider.from_settings(settings)
    return RefreshDependencies(
        settings=settings,
        store=RefreshStore(connections),
        jobs=JobStore(connections),
        queues=Queues(),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: RefreshDependencies | None = None
) -> PartialItemFailureResponse:
    """`deps` lets a test or benchmark hand in its own; Lambda calls with (event, context)."""
    records = [SqsRecordModel.model_validate(raw) for raw in event.get("Records", [])]
    result = refresh_views(
        [to_received(record) for record in records],
        deps if deps is not None else dependencies(),
        remaining_ms=context.get_remaining_time_in_millis,
    )

    executed = result.views_with(ViewDecision.EXECUTED)
    skipped = result.views_with(ViewDecision.COVERED, ViewDecision.UNCHANGED)
    metrics.add_metric("RefreshesExecuted", MetricUnit.Count, len(executed))
    metrics.add_metric("RefreshesSkipped", MetricUnit.Count, len(skipped))
    metrics.add_metric("RefreshRequestsRetried", MetricUnit.Count, result.count(Disposition.RETRY))
    metrics.add_metric(
        "RefreshRequestsDeadLettered", MetricUnit.Count, result.count(Disposition.DEAD_LETTERED)
    )
    metrics.add_metric(
        "RefreshRequestsLeftToRedrive",
        MetricUnit.Count,
        result.count(Disposition.LEFT_TO_REDRIVE),
    )
    for view in executed:
        metrics.add_metric("RefreshDuration", MetricUnit.Milliseconds, view.duration_ms or 0)
        metrics.add_metric("Freshness", MetricUnit.Milliseconds, view.freshness_ms or 0)

    def record_handler(record: SqsRecordModel) -> None:
        result.raise_if_retry(record.messageId)

    # A processor per invocation: it keeps per-batch state (see calculate_points).
    processor = BatchProcessor(
        event_type=EventType.SQS, model=SqsRecordModel, raise_on_entire_batch_failure=False
    )
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
