"""The SQS message bodies of SPEC section 3: JSON, camelCase, validated at the edge."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from matchstats.errors import InvalidMessageError

# Strict: "42", 42.0 and true are not match ids; a producer sending them has a bug
# worth hearing about rather than a coercion that hides it.
MatchId = Annotated[int, Field(strict=True, gt=0, le=2**63 - 1)]
ScoreVersion = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]


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
        if self is RefreshScope.ALL:
            return (RefreshScope.COMPETITION_STANDINGS.value, RefreshScope.COMPETITOR_STATS.value)
        return (self.value,)


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


def parse_points_message(body: str) -> PointsMessage:
    """Parses a points body or raises InvalidMessageError naming what is wrong."""
    return _parse(PointsMessage, body)


def parse_refresh_message(body: str) -> RefreshMessage:
    return _parse(RefreshMessage, body)


def _parse(model: type[M], body: str) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidMessageError(describe_validation_error(exc)) from exc


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
