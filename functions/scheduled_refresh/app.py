"""ScheduledRefreshFunction: an EventBridge schedule -> one refresh request (scope `all`).

The schedule is the safety net of the pipeline: whatever refresh a points batch failed
to request, the next tick requests. So any event asks for a refresh (SPEC section 5): the
schedule's own, `{}` from `sam local invoke`, or whatever a person sends; the log says
which shape it was. It only sends a message; it never opens a database connection (and
never imports a database driver).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from matchstats.config import RefreshRequestSettings
from matchstats.messages import RefreshReason, RefreshScope, recognise_schedule_event
from matchstats.observability import logger, metrics, tracer
from matchstats.queues import Queues
from matchstats.refresh_requests import enqueue_refresh


class RefreshEnqueued(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    status: Literal["enqueued"] = "enqueued"
    scope: RefreshScope
    message_id: str


@dataclass(frozen=True)
class ScheduleDependencies:
    settings: RefreshRequestSettings
    queues: Queues


@cache
def dependencies() -> ScheduleDependencies:
    """Built once per execution environment (cold start) and reused while warm."""
    return ScheduleDependencies(settings=RefreshRequestSettings.from_env(), queues=Queues())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(
    event: object, context: LambdaContext, deps: ScheduleDependencies | None = None
) -> dict[str, Any]:
    """`event` is any JSON value; `deps` lets a test hand in fakes (Lambda calls with
    (event, context) only)."""
    # On every line of this invocation, a failure to send included.
    logger.append_keys(**recognise_schedule_event(event).log_fields())
    deps = deps if deps is not None else dependencies()
    message_id = enqueue_refresh(
        deps.settings.refresh_queue_url,
        scope=RefreshScope.ALL,
        reason=RefreshReason.SCHEDULE,
        queues=deps.queues,
    )

    metrics.add_metric("ScheduledRefreshRequested", MetricUnit.Count, 1)
    logger.info("refresh requested", extra={"messageId": message_id})
    return RefreshEnqueued(scope=RefreshScope.ALL, message_id=message_id).model_dump(
        mode="json", by_alias=True
    )
