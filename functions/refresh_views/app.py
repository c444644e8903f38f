"""RefreshViewsFunction: SQS RefreshQueue -> coalesced REFRESH MATERIALIZED VIEW CONCURRENTLY."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from matchstats.config import RefreshSettings
from matchstats.db.connection import ConnectionProvider
from matchstats.db.jobs import JobStore
from matchstats.db.refresh import RefreshStore
from matchstats.events import StandingsEvents
from matchstats.observability import logger, metrics, tracer
from matchstats.outcomes import Disposition
from matchstats.queues import Queues
from matchstats.refresh import RefreshDependencies, ViewDecision, refresh_views
from matchstats.sqs_batch import process_batch

COUNT = MetricUnit.Count


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
        events=StandingsEvents(),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: RefreshDependencies | None = None
) -> PartialItemFailureResponse:
    """`deps` lets a test or benchmark hand in its own; Lambda calls with (event, context)."""
    deps = deps if deps is not None else dependencies()
    result, response = process_batch(
        event,
        context,
        lambda messages: refresh_views(
            messages, deps, remaining_ms=context.get_remaining_time_in_millis
        ),
    )
    executed = result.views_with(ViewDecision.EXECUTED)
    skipped = result.views_with(ViewDecision.COVERED, ViewDecision.UNCHANGED)
    count = result.count
    metrics.add_metric("RefreshesExecuted", COUNT, len(executed))
    metrics.add_metric("RefreshesSkipped", COUNT, len(skipped))
    metrics.add_metric("RefreshRequestsRetried", COUNT, count(Disposition.RETRY))
    metrics.add_metric("RefreshRequestsDeadLettered", COUNT, count(Disposition.DEAD_LETTERED))
    metrics.add_metric("RefreshRequestsLeftToRedrive", COUNT, count(Disposition.LEFT_TO_REDRIVE))
    for view in executed:
        metrics.add_metric("RefreshDuration", MetricUnit.Milliseconds, view.duration_ms or 0)
        metrics.add_metric("Freshness", MetricUnit.Milliseconds, view.freshness_ms or 0)
    return response
