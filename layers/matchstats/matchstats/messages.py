"""The SQS message bodies of SPEC section 3: JSON, camelCase, validated at the edge; and
the events that trigger a scheduled refresh (SPEC section 5), recognised for the log."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from functools import cache
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from matchstats.errors import InvalidMessageError

_CANONICAL_DECIMAL = re.compile(r"[1-9][0-9]*")
# 20 digits exceed both bounds below, so a longer string converts as its first 20 digits
# (still out of range, the same error) without reaching int()'s 4,300-digit limit.
_ENOUGH_DIGITS = 20


def _positive_decimal_string(value: object) -> object:
    """A JSON string holding the canonical decimal form of a positive integer ("42") as
    that integer; any other value unchanged, for the strict integer check to judge.

    node-postgres returns bigint columns as strings, so a Node.js producer sends
    {"matchId": "42"} unless someone converts it. Only the one spelling a number has is
    accepted: a sign, spaces, leading zeros, a fraction, an exponent or non-ASCII digits
    ("042", " 42", "+42", "4.2", "1e3", "٤٢") mean the producer has a bug worth hearing
    about, not a coercion that hides it. Booleans and floats (true, 42.0) stay refused.
    """
    if not isinstance(value, str):
        return value
    if _CANONICAL_DECIMAL.fullmatch(value) is None:
        raise PydanticCustomError(
            "positive_integer_string",
            "must be a positive integer or its decimal string without sign, spaces or"
            " leading zeros",
        )
    return int(value[:_ENOUGH_DIGITS])


# A JSON integer, or its canonical decimal string; never true, 42.0 or "042".
MatchId = Annotated[
    int, Field(strict=True, gt=0, le=2**63 - 1), BeforeValidator(_positive_decimal_string)
]
ScoreVersion = Annotated[
    int, Field(strict=True, ge=1, le=2**31 - 1), BeforeValidator(_positive_decimal_string)
]


class _Message(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    def to_body(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


M = TypeVar("M", bound=_Message)


class PointsMessage(_Message):
    """Asks for the points of one match to be (re)computed from its current row."""

    match_id: MatchId
    # Informs logs only: the handler always works from the match's current row.
    score_version: ScoreVersion | None = None


class RefreshScope(StrEnum):
    ALL = "all"
    COMPETITION_STANDINGS = "competition_standings"
    COMPETITOR_STATS = "competitor_stats"

    @property
    def views(self) -> tuple[str, ...]:
        """The materialized views this scope names, in REFRESHABLE_VIEWS order."""
        if self is RefreshScope.ALL:
            return REFRESHABLE_VIEWS
        return (self.value,)


# The views a refresh may name: every scope but `all` is one view. Nothing else reaches SQL.
REFRESHABLE_VIEWS: tuple[str, ...] = tuple(
    scope.value for scope in RefreshScope if scope is not RefreshScope.ALL
)


class RefreshReason(StrEnum):
    POINTS = "points"
    SCHEDULE = "schedule"
    API = "api"
    MANUAL = "manual"


class RefreshMessage(_Message):
    """Asks for the materialized views of `scope` to reflect everything committed by
    `requested_at` (a database clock reading)."""

    scope: RefreshScope = RefreshScope.ALL
    reason: RefreshReason
    requested_at: AwareDatetime
    force: bool = False


def points_subject(match_id: int | None) -> str:
    """A points job's subject in job_history ("match 42"); "match ?" for a body that does
    not parse. The one place a subject is spelt: operators filter on it."""
    return f"match {match_id}" if match_id is not None else "match ?"


def refresh_subject(message: RefreshMessage | None) -> str:
    """A refresh job's subject in job_history ("refresh all (points)"); "refresh ?" for a
    body that does not parse."""
    if message is None:
        return "refresh ?"
    return f"refresh {message.scope.value} ({message.reason.value})"


def parse_points_message(body: str) -> PointsMessage:
    """Parses a points body or raises InvalidMessageError naming what is wrong."""
    return _parse(PointsMessage, body)


def parse_refresh_message(body: str) -> RefreshMessage:
    return _parse(RefreshMessage, body)


def _parse(model: type[M], body: str) -> M:
    _refuse_duplicate_keys(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidMessageError(describe_validation_error(exc)) from exc


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


def _refuse_duplicate_keys(body: str) -> None:
    """Raises InvalidMessageError naming the first key that an object of `body` repeats,
    at any depth: {"matchId": 1, "matchId": 2} is ambiguous. RFC 8259 section 4 leaves
    the meaning of repeated names to each parser (pydantic, like json.loads, keeps the
    last; other readers keep the first or fail), so the producer has a bug worth hearing
    about. A body that is not JSON is left to the model's parse, which names the problem."""
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as exc:
        raise InvalidMessageError(
            f"body: duplicate key {json.dumps(exc.key)} (a key may appear once per object)"
        ) from exc
    except (ValueError, RecursionError):
        return


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field, e.g. "matchId: Input should be greater than 0"."""
    problems = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            problems.append(f"body is not valid JSON ({err['ctx'].get('error', err['msg'])})")
            continue
        field = ".".join(str(part) for part in err["loc"]) or "body"
        problems.append(f"{field}: {err['msg']}")
    return "; ".join(problems)


# --- The schedule's events (SPEC section 5) ------------------------------------------
# ScheduledRefreshFunction asks for a refresh whatever it is sent; these models only
# decide what its log says about the event.

# Bounds on what an event puts in the log: it may be a person's paste, of any size. A
# known shape's field beyond them makes the event UNKNOWN.
_LOGGED_KEYS = 20
_LOGGED_KEY_CHARS = 64
_LOGGED_ID_CHARS = 128
_LOGGED_RESOURCES = 10
_LOGGED_ARN_CHARS = 2048
_JSON_TYPES: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class ScheduleEventShape(StrEnum):
    """Which event triggered a scheduled refresh."""

    # template.yaml's EventBridge Scheduler target Input: {"source": "matchstats.schedule"}.
    SCHEDULER_INPUT = "scheduler-input"
    # EventBridge's "Scheduled Event": from a schedule rule (aws.events), from EventBridge
    # Scheduler when a schedule sets no Input (aws.scheduler), or from
    # `sam local generate-event cloudwatch scheduled-event` (which has no `version`).
    SCHEDULED_EVENT = "scheduled-event"
    # {}: `sam local invoke` without an event, or a console test event left empty.
    EMPTY = "empty"
    # Anything else a person or another trigger sends: any JSON value.
    UNKNOWN = "unknown"


class _ScheduleEvent(BaseModel):
    # Built on first use: only the schedule function, not every importer, pays for it.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        defer_build=True,
    )


class SchedulerInput(_ScheduleEvent):
    """What template.yaml's EventBridge Scheduler target sends (its `Input`); Scheduler
    fills in the two context attributes."""

    source: Literal["matchstats.schedule"]
    scheduled_time: AwareDatetime | None = None
    execution_id: str | None = Field(default=None, max_length=_LOGGED_ID_CHARS)


class ScheduledEvent(_ScheduleEvent):
    """EventBridge's "Scheduled Event". Only `source` and `detail-type` identify it; the
    other fields are optional because hand-made copies leave some out."""

    source: Literal["aws.events", "aws.scheduler"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    id: str | None = Field(default=None, max_length=_LOGGED_ID_CHARS)
    time: AwareDatetime | None = None
    # The ARN of the rule or schedule that fired.
    resources: tuple[Annotated[str, Field(max_length=_LOGGED_ARN_CHARS)], ...] = Field(
        default=(), max_length=_LOGGED_RESOURCES
    )


@cache
def _schedule_event_adapter() -> TypeAdapter[SchedulerInput | ScheduledEvent]:
    """Told apart by `source`; an event that fits neither is UNKNOWN, never an error."""
    return TypeAdapter(Annotated[SchedulerInput | ScheduledEvent, Field(discriminator="source")])


class ScheduleEventSeen(BaseModel):
    """What the log says about the event of a scheduled refresh: its shape and the fields
    that tell one tick (and one retry of it) from another. Of an UNKNOWN event only its
    JSON type and, for an object, its top-level keys (the first 20, sorted, each cut at 64
    characters) and their count: never a value, since a person may have pasted a secret."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, defer_build=True
    )

    event_shape: ScheduleEventShape
    event_source: str | None = None
    scheduled_time: AwareDatetime | None = None
    execution_id: str | None = None
    event_id: str | None = None
    resources: tuple[str, ...] | None = None
    event_type: str | None = None
    event_keys: tuple[str, ...] | None = None
    event_key_count: int | None = None

    def log_fields(self) -> dict[str, object]:
        """camelCase keys, times in ISO 8601, absent fields left out."""
        fields: dict[str, object] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return fields


def recognise_schedule_event(event: object) -> ScheduleEventSeen:
    """The shape of any JSON value a Lambda invocation can carry (an object, an array, a
    string, a number, true/false or null). Never raises."""
    if isinstance(event, dict) and not event:
        return ScheduleEventSeen(event_shape=ScheduleEventShape.EMPTY)
    try:
        known = _schedule_event_adapter().validate_python(event)
    except ValidationError:
        return _unknown_schedule_event(event)
    if isinstance(known, SchedulerInput):
        return ScheduleEventSeen(
            event_shape=ScheduleEventShape.SCHEDULER_INPUT,
            event_source=known.source,
            scheduled_time=known.scheduled_time,
            execution_id=known.execution_id,
        )
    return ScheduleEventSeen(
        event_shape=ScheduleEventShape.SCHEDULED_EVENT,
        event_source=known.source,
        scheduled_time=known.time,
        event_id=known.id,
        resources=known.resources or None,
    )


def _unknown_schedule_event(event: object) -> ScheduleEventSeen:
    if isinstance(event, dict):
        keys = sorted(str(key)[:_LOGGED_KEY_CHARS] for key in event)
        return ScheduleEventSeen(
            event_shape=ScheduleEventShape.UNKNOWN,
            event_type="object",
            event_keys=tuple(keys[:_LOGGED_KEYS]),
            event_key_count=len(keys),
        )
    return ScheduleEventSeen(
        event_shape=ScheduleEventShape.UNKNOWN,
        event_type=_JSON_TYPES.get(type(event), type(event).__name__),
    )
