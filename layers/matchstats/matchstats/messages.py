"""The SQS message bodies of SPEC section 3: JSON, camelCase, validated at the edge."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
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
