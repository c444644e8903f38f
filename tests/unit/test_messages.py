"""Message parsing at the edge: bad input fails with a message that names the field."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from matchstats.errors import InvalidMessageError
from matchstats.messages import (
    PointsMessage,
    RefreshReason,
    RefreshScope,
    parse_points_message,
    parse_refresh_message,
)


def test_a_points_message_needs_only_a_match_id_and_ignores_unknown_fields() -> None:
    # Given a body with an extra field
    body = '{"matchId": 42, "scoreVersion": 3, "sentBy": "scoring"}'

    # When it is parsed
    message = parse_points_message(body)

    # Then it carries the match and the version, and nothing else
    assert message == PointsMessage(match_id=42, score_version=3)
    assert message.to_body() == '{"matchId":42,"scoreVersion":3}'


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "body is not valid JSON"),
        ("[42]", "body: Input should be an object"),
        ("{}", "matchId: Field required"),
        ('{"matchId": 0}', "matchId: Input should be greater than 0"),
        ('{"matchId": -5}', "matchId: Input should be greater than 0"),
        ('{"matchId": 4.5}', "matchId: Input should be a valid integer"),
        ('{"matchId": true}', "matchId: Input should be a valid integer"),
        ('{"matchId": 9223372036854775808}', "matchId: Input should be less than or equal to"),
        (
            '{"matchId": 1, "scoreVersion": 0}',
            "scoreVersion: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_points_body_is_rejected_naming_the_problem(body: str, problem: str) -> None:
    # When a bad body is parsed, Then the error names what is wrong
    with pytest.raises(InvalidMessageError) as caught:
        parse_points_message(body)
    assert str(caught.value).startswith(problem)
    assert caught.value.kind == "invalid_message"


@pytest.mark.parametrize(
    ("parse", "body", "key"),
    [
        (parse_points_message, '{"matchId": 1, "matchId": 2}', "matchId"),
        (
            parse_points_message,
            '{"matchId": 1, "scoreVersion": 2, "scoreVersion": 2}',
            "scoreVersion",
        ),
        (parse_points_message, '{"matchId": 1, "meta": {"by": "a", "by": "b"}}', "by"),
        (
            parse_refresh_message,
            '{"reason": "api", "requestedAt": "2025-01-01T00:00:00Z", "scope": "all",'
            ' "scope": "competitor_stats"}',
            "scope",
        ),
    ],
)
def test_a_body_that_repeats_a_key_is_rejected_naming_the_key(
    parse: Callable[[str], object], body: str, key: str
) -> None:
    # Given a body whose meaning depends on which of two values a reader keeps
    # When it is parsed
    with pytest.raises(InvalidMessageError) as caught:
        parse(body)

    # Then it is an invalid message whose error names the repeated key
    assert str(caught.value) == f'body: duplicate key "{key}" (a key may appear once per object)'
    assert caught.value.kind == "invalid_message"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"matchId": "42"}', PointsMessage(match_id=42)),
        ('{"matchId": 42, "scoreVersion": "3"}', PointsMessage(match_id=42, score_version=3)),
        ('{"matchId": "42", "scoreVersion": "3"}', PointsMessage(match_id=42, score_version=3)),
        ('{"matchId": "9223372036854775807"}', PointsMessage(match_id=2**63 - 1)),
        (
            '{"matchId": "1", "scoreVersion": "2147483647"}',
            PointsMessage(match_id=1, score_version=2**31 - 1),
        ),
    ],
    ids=["matchId", "scoreVersion", "both", "largest bigint", "largest int"],
)
def test_a_node_producer_may_send_bigint_ids_as_decimal_strings(
    body: str, expected: PointsMessage
) -> None:
    # Given a body from a Node.js producer: node-postgres reads bigint columns as strings
    # When it is parsed
    message = parse_points_message(body)

    # Then it is the message the numbers would have made, and is passed on as numbers
    assert message == expected
    assert message.to_body() == expected.to_body()


AMBIGUOUS_STRINGS = ["042", " 42", "42 ", "4.2", "-1", "0", "", "+42", "1e3", "\u0664\u0662"]
STRING_RULE = "must be a positive integer or its decimal string without sign, spaces or leading"


@pytest.mark.parametrize("field", ["matchId", "scoreVersion"])
@pytest.mark.parametrize("text", AMBIGUOUS_STRINGS, ids=repr)
def test_a_string_that_is_not_the_one_spelling_of_a_positive_integer_is_rejected(
    field: str, text: str
) -> None:
    # Given a body whose field holds a string that could be read more than one way
    body = json.dumps({"matchId": 7, field: text}, ensure_ascii=False)

    # When it is parsed, Then the error names the field and the rule
    with pytest.raises(InvalidMessageError) as caught:
        parse_points_message(body)
    assert str(caught.value) == f"{field}: {STRING_RULE} zeros"
    assert caught.value.kind == "invalid_message"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"matchId": "9223372036854775808"}', "matchId: Input should be less than or equal to"),
        ('{"matchId": "' + "9" * 5000 + '"}', "matchId: Input should be less than or equal to"),
        ('{"matchId": 1, "scoreVersion": "2147483648"}', "scoreVersion: Input should be less"),
        ('{"matchId": 42.0}', "matchId: Input should be a valid integer"),
        ('{"matchId": 1, "scoreVersion": true}', "scoreVersion: Input should be a valid integer"),
        ('{"matchId": 1, "scoreVersion": 3.0}', "scoreVersion: Input should be a valid integer"),
    ],
    ids=["bigint + 1", "5000 digits", "int + 1", "42.0", "true version", "3.0 version"],
)
def test_a_decimal_string_or_number_out_of_range_or_not_whole_is_rejected_by_name(
    body: str, problem: str
) -> None:
    # When a body whose value is canonical but too large, or not an integer, is parsed
    with pytest.raises(InvalidMessageError) as caught:
        parse_points_message(body)

    # Then the error names the field and the bound
    assert str(caught.value).startswith(problem)


def test_a_refresh_message_round_trips_in_camel_case() -> None:
    # Given a refresh request as the points function sends it
    body = '{"scope": "all", "reason": "points", "requestedAt": "2026-11-28T12:00:00.123456+00:00"}'

    # When it is parsed and written back
    message = parse_refresh_message(body)

    # Then nothing is lost and the views it names are both
    assert (message.scope, message.reason, message.force) == (
        RefreshScope.ALL,
        RefreshReason.POINTS,
        False,
    )
    assert message.scope.views == ("competition_standings", "competitor_stats")
    assert parse_refresh_message(message.to_body()) == message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"scope": "all", "reason": "points"}', "requestedAt: Field required"),
        (
            '{"scope": "all", "reason": "points", "requestedAt": "2026-11-28T12:00:00"}',
            "requestedAt: Input should have timezone info",
        ),
        ('{"scope": "all", "reason": "cron", "requestedAt": "2026-11-28T12:00:00Z"}', "reason:"),
        ('{"scope": "teams", "reason": "api", "requestedAt": "2026-11-28T12:00:00Z"}', "scope:"),
    ],
)
def test_a_bad_refresh_body_is_rejected_naming_the_problem(body: str, problem: str) -> None:
    with pytest.raises(InvalidMessageError) as caught:
        parse_refresh_message(body)
    assert str(caught.value).startswith(problem)
