"""RefreshApiFunction: POST /cron/update-stats (API Gateway REST) -> one refresh request.

The bearer check, the models and the error answers live in matchstats.api.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from matchstats.api import (
    ROUTE,
    UPDATE_STATS_PATH,
    ApiDependencies,
    RefreshAccepted,
    RefreshRequestBody,
    api_resolver,
    normalized,
)
from matchstats.config import ApiSettings
from matchstats.cron_secret import CronSecret
from matchstats.messages import RefreshReason
from matchstats.observability import logger, metrics, tracer
from matchstats.queues import Queues
from matchstats.refresh_requests import enqueue_refresh


@cache
def dependencies() -> ApiDependencies:
    """Built once per execution environment (cold start) and reused while warm, so the
    cron secret's cache and its forced-fetch rate limit live as long as the environment."""
    settings = ApiSettings.from_env()
    return ApiDependencies(
        settings=settings, cron_secret=CronSecret.from_settings(settings), queues=Queues()
    )


app = api_resolver(dependencies)


@app.post(UPDATE_STATS_PATH, **ROUTE)
def update_stats(
    deps: Annotated[ApiDependencies, Depends(dependencies)],
    body: Annotated[RefreshRequestBody, Body()] = RefreshRequestBody(),  # noqa: B008 - immutable
) -> RefreshAccepted:
    message_id = enqueue_refresh(
        deps.settings.refresh_queue_url,
        scope=body.scope,
        reason=RefreshReason.API,
        queues=deps.queues,
    )
    metrics.add_metric("RefreshApiAccepted", MetricUnit.Count, 1)
    logger.info("refresh requested", extra={"scope": body.scope.value, "messageId": message_id})
    return RefreshAccepted(scope=body.scope, message_id=message_id)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST,
    clear_state=True,
    # Explicit, so POWERTOOLS_LOGGER_LOG_EVENT cannot log the Authorization header.
    log_event=False,
)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(normalized(event), context)
