"""ScheduledRefreshFunction: an EventBridge schedule -> one refresh request (scope `all`).

The schedule is the safety net of the pipeline: whatever refresh a points batch failed
to request, the next tick requests. It only sends a message; it never opens a database
connection (and never imports a database driver).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from matchstats.config import RefreshRequestSettings
from matchstats.errors import InvalidMessageError
from matchstats.messages import RefreshReason, RefreshScope, describe_validation_error
from matchstats.observability import logger, metrics, tracer
from matchstats.queues import Queues
from matchstats.refresh_requests import enqueue_refresh

SCHEDULE_SOURCE = "matchstats.schedule"


class SchedulerInput(BaseModel):
    """What template.yaml's EventBridge Scheduler target sends (its `Input`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    source: Literal["matchstats.schedule"]
    # Filled in by EventBridge Scheduler's context attributes; informs logs only.
    scheduled_time: AwareDatetime | None = None
    execution_id: str | None = None


class ScheduledEvent(EventBridgeModel):
    """The EventBridge "Scheduled Event": from a classic schedule rule (aws.events), or
    from EventBridge Scheduler when a schedule sets no Input (aws.scheduler)."""

    source: Literal["aws.events", "aws.scheduler"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")


ScheduleTrigger = SchedulerInput | ScheduledEvent
# Told apart by `source`, so an unknown event fails with one error, not one per shape.
_TRIGGER = TypeAdapter[ScheduleTrigger](Annotated[ScheduleTrigger, Field(discriminator="source")])


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


def parse_trigger(event: dict[str, Any]) -> ScheduleTrigger:
    """The schedule event, or InvalidMessageError naming what does not fit."""
    try:
        return _TRIGGER.validate_python(event)
    except ValidationError as exc:
        raise InvalidMessageError(
            f"not a schedule event (expected {{'source': '{SCHEDULE_SOURCE}'}} from"
            f" EventBridge Scheduler, or a 'Scheduled Event' from EventBridge):"
            f" {describe_validation_error(exc)}"
        ) from exc


def describe_trigger(trigger: ScheduleTrigger) -> dict[str, str | None]:
    """Which schedule tick this is, for the log."""
    if isinstance(trigger, SchedulerInput):
        scheduled = trigger.scheduled_time
        return {
            "trigger": trigger.source,
            "scheduledTime": scheduled.isoformat() if scheduled else None,
            "executionId": trigger.execution_id,
        }
    return {
        "trigger": trigger.source,
        "scheduledTime": trigger.time.isoformat(),
        "eventId": trigger.id,
    }


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: ScheduleDependencies | None = None
) -> dict[str, Any]:
    """`deps` lets a test hand in fakes; Lambda calls with (event, context) only."""
    trigger = parse_trigger(event)
    deps = deps if deps is not None else dependencies()
    message_id = enqueue_refresh(
        deps.settings.refresh_queue_url,
        scope=RefreshScope.ALL,
        reason=RefreshReason.SCHEDULE,
        queues=deps.queues,
    )

    metrics.add_metric("ScheduledRefreshRequested", MetricUnit.Count, 1)
    logger.info("refresh requested", extra={**describe_trigger(trigger), "messageId": message_id})
    return RefreshEnqueued(scope=RefreshScope.ALL, message_id=message_id).model_dump(
        mode="json", by_alias=True
    )
