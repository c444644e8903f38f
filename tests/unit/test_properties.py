"""Properties of message parsing (SPEC section 3), checked on generated bodies.

A points body is the edge between the application and the bundle: whatever arrives,
parsing either yields a message or raises InvalidMessageError (which the consumer turns
into a dead letter with its reason); nothing else may escape, or one bad body would fail
the whole batch it arrived in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matchstats.errors import InvalidMessageError
from matchstats.messages import (
    PointsMessage,
    RefreshMessage,
    RefreshReason,
    RefreshScope,
    parse_points_message,
    parse_refresh_message,
)

MAX_MATCH_ID = 2**63 - 1
MAX_SCORE_VERSION = 2**31 - 1
# The names a points body's fields answer to: the camelCase alias and the field name.
POINTS_FIELDS = {"matchId", "scoreVersion", "match_id", "score_version"}

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Fields a producer might add that the contract says are ignored.
unknown_fields = st.dictionaries(
    st.text(max_size=12).filter(lambda key: key not in POINTS_FIELDS), json_values, max_size=4
)
# Built through a function: st.builds on the model itself would also fill in the
# camelCase aliases from the type hints, and those win over the field names.
points_messages = st.builds(
    lambda match_id, score_version: PointsMessage(match_id=match_id, score_version=score_version),
    st.integers(1, MAX_MATCH_ID),
    st.none() | st.integers(1, MAX_SCORE_VERSION),
)


def is_canonical_match_id(text: str) -> bool:
    """The one string spelling of a valid match id: ASCII digits, no leading zero, in range."""
    return text.isascii() and text.isdigit() and text[0] != "0" and int(text) <= MAX_MATCH_ID


# Anything but a JSON integer from 1 to 2^63 - 1, or that integer's canonical decimal string.
bad_match_ids = (
    st.integers(max_value=0)
    | st.integers(min_value=MAX_MATCH_ID + 1, max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12).filter(lambda text: not is_canonical_match_id(text))
    | st.booleans()
    | st.none()
    | st.lists(st.integers(1, 100), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)


def minutes_east(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def _mutations(body: str) -> st.SearchStrategy[str]:
    """Bodies one edit away from `body`: a character dropped, replaced or inserted."""
    positions = st.integers(0, max(len(body) - 1, 0))
    characters = st.characters(codec="utf-8")
    return (
        positions.map(lambda i: body[:i] + body[i + 1 :])
        | st.tuples(positions, characters).map(lambda p: body[: p[0]] + p[1] + body[p[0] + 1 :])
        | st.tuples(positions, characters).map(lambda p: body[: p[0]] + p[1] + body[p[0] :])
    )


arbitrary_bodies = (
    st.text(max_size=200)
    | json_values.map(json.dumps)
    | points_messages.flatmap(lambda message: _mutations(message.to_body()))
    | st.binary(max_size=60).map(lambda raw: raw.decode("utf-8", errors="replace"))
)


@PROPERTY_SETTINGS
@given(message=points_messages, extra=unknown_fields)
def test_every_valid_points_message_round_trips_whatever_else_the_body_holds(
    message: PointsMessage, extra: dict[str, Any]
) -> None:
    # Given a valid message written as the producer writes it, and with unknown fields added
    body = message.to_body()
    padded = json.dumps({**extra, **json.loads(body)})

    # When both are parsed, Then each is the message it was made from
    assert parse_points_message(body) == message
    assert parse_points_message(padded) == message


@PROPERTY_SETTINGS
@given(match_id=bad_match_ids, extra=unknown_fields, score_version=st.none() | st.integers(1, 9))
def test_a_match_id_that_is_not_a_positive_64_bit_integer_is_rejected_by_name(
    match_id: Any, extra: dict[str, Any], score_version: int | None
) -> None:
    # Given a JSON body whose matchId is not a positive integer that fits a bigint, nor
    # that integer's canonical decimal string
    fields: dict[str, Any] = {**extra, "matchId": match_id}
    if score_version is not None:
        fields["scoreVersion"] = score_version
    body = json.dumps(fields)

    # When it is parsed
    try:
        parsed = parse_points_message(body)
    except InvalidMessageError as exc:
        error = exc
    else:
        raise AssertionError(f"{body!r} was accepted as {parsed!r}")

    # Then the error is permanent and names matchId
    assert error.kind == "invalid_message"
    assert "matchId" in str(error), str(error)


M = TypeVar("M")


def parse_or_reason(parse: Callable[[str], M], body: str) -> tuple[M | None, str | None]:
    """The parsed message, or the reason an InvalidMessageError gave (anything else raises)."""
    try:
        return parse(body), None
    except InvalidMessageError as exc:
        return None, str(exc)


@PROPERTY_SETTINGS
@given(message=points_messages, extra=unknown_fields)
def test_ids_sent_as_decimal_strings_parse_to_the_message_the_numbers_make(
    message: PointsMessage, extra: dict[str, Any]
) -> None:
    # Given a valid message as a Node.js producer writes it: node-postgres reads bigint
    # columns as strings, so both numbers may arrive as their decimal strings
    fields: dict[str, Any] = {**extra, "matchId": str(message.match_id)}
    if message.score_version is not None:
        fields["scoreVersion"] = str(message.score_version)

    # When it is parsed
    parsed = parse_points_message(json.dumps(fields))

    # Then it is the message the numbers make, and it is passed on written as numbers
    assert parsed == message
    assert parsed.to_body() == message.to_body()


def _in_other_digits(zero: str) -> Callable[[str], str]:
    return lambda digits: digits.translate({ord("0") + d: ord(zero) + d for d in range(10)})


# Ways to spell a valid number as a string that a reader could take for another value or
# for no number at all; the one accepted spelling is the canonical decimal.
MISSPELLINGS: list[Callable[[str], str]] = [
    lambda digits: "0" + digits,
    lambda digits: "00" + digits,
    lambda digits: "+" + digits,
    lambda digits: "-" + digits,
    lambda digits: " " + digits,
    lambda digits: digits + " ",
    lambda digits: digits + "\n",
    lambda digits: "\t" + digits,
    lambda digits: "\u00a0" + digits,
    lambda digits: digits + ".0",
    lambda digits: digits + "e0",
    lambda digits: "0x" + digits,
    lambda digits: digits[:1] + "_" + digits[1:] if len(digits) > 1 else digits + "_",
    _in_other_digits("\u0660"),  # Arabic-Indic
    _in_other_digits("\u0966"),  # Devanagari
    _in_other_digits("\uff10"),  # fullwidth
]


@PROPERTY_SETTINGS
@given(
    field=st.sampled_from(["matchId", "scoreVersion"]),
    value=st.integers(1, MAX_SCORE_VERSION),
    misspell=st.sampled_from(MISSPELLINGS),
)
def test_any_other_string_spelling_of_a_valid_id_is_rejected_by_name(
    field: str, value: int, misspell: Callable[[str], str]
) -> None:
    # Given a body whose matchId or scoreVersion is a valid number misspelled as a string
    text = misspell(str(value))
    body = json.dumps({"matchId": 1, field: text}, ensure_ascii=False)

    # When it is parsed, Then it is refused as invalid, the reason naming the field
    message, reason = parse_or_reason(parse_points_message, body)
    assert message is None, f"{text!r} was accepted as {message!r}"
    assert reason == (
        f"{field}: must be a positive integer or its decimal string without sign, spaces or"
        " leading zeros"
    )


@PROPERTY_SETTINGS
@given(body=arbitrary_bodies)
def test_any_text_parses_to_a_message_or_fails_as_an_invalid_message(body: str) -> None:
    # Given any text at all as a points body
    # When it is parsed
    message, reason = parse_or_reason(parse_points_message, body)
    # Then a rejection is an InvalidMessageError with a reason to put in the DLQ ...
    if message is None:
        assert reason is not None
        assert reason.strip()
        return

    # ...and an acceptance is a valid message that says the same when written back
    assert 1 <= message.match_id <= MAX_MATCH_ID
    assert parse_points_message(message.to_body()) == message


@PROPERTY_SETTINGS
@given(body=arbitrary_bodies)
def test_any_text_parses_to_a_refresh_request_or_fails_as_an_invalid_message(body: str) -> None:
    # Given any text at all as a refresh body
    # When it is parsed, Then it is a refresh request or an InvalidMessageError with a reason
    request, reason = parse_or_reason(parse_refresh_message, body)
    if request is None:
        assert reason is not None
        assert reason.strip()
        return
    assert parse_refresh_message(request.to_body()) == request


@PROPERTY_SETTINGS
@given(
    message=st.builds(
        lambda scope, reason, requested_at, force: RefreshMessage(
            scope=scope, reason=reason, requested_at=requested_at, force=force
        ),
        st.sampled_from(RefreshScope),
        st.sampled_from(RefreshReason),
        # Offsets in whole minutes, as a database clock reads: ISO 8601 offsets carry no
        # seconds, so a historical local mean time (-00:16:08) cannot round-trip.
        st.datetimes(timezones=st.integers(-14 * 60, 14 * 60).map(minutes_east)),
        st.booleans(),
    )
)
def test_every_refresh_request_round_trips(message: RefreshMessage) -> None:
    # Given a refresh request, When it is written and parsed back, Then nothing changed
    parsed = parse_refresh_message(message.to_body())
    assert parsed == message
    assert parsed.requested_at.utcoffset() == message.requested_at.utcoffset()
