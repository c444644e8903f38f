"""CalculatePointsFunction: SQS PointsQueue -> match_points, then one delayed refresh request."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from matchstats.config import PointsSettings
from matchstats.db.connection import ConnectionProvider
from matchstats.db.jobs import JobStore
from matchstats.db.points import PointsStore
from matchstats.observability import logger, metrics, tracer
from matchstats.outcomes import Disposition
from matchstats.points import PointsDependencies, calculate_points
from matchstats.queues import Queues
from matchstats.sqs_batch import process_batch

COUNT = MetricUnit.Count


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
    deps = deps if deps is not None else dependencies()
    result, response = process_batch(
        event,
        context,
        lambda messages: calculate_points(
            messages, deps, remaining_ms=context.get_remaining_time_in_millis
        ),
    )
    count = result.count
    metrics.add_metric("PointsMessagesCompleted", COUNT, count(Disposition.COMPLETED))
    metrics.add_metric("PointsMessagesDeadLettered", COUNT, count(Disposition.DEAD_LETTERED))
    metrics.add_metric("PointsMessagesRetried", COUNT, count(Disposition.RETRY))
    metrics.add_metric("PointsMessagesLeftToRedrive", COUNT, count(Disposition.LEFT_TO_REDRIVE))
    metrics.add_metric("PointsMatchesChanged", COUNT, result.matches_changed)
    return response
