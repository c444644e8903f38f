"""The bundle works whatever the database's encoding or the client_encoding a role or
database sets (SPEC section 4: no dependence on a database's defaults).

psycopg encodes every string in the session's client_encoding, and the server converts
what it receives into the database's encoding. Message bodies are Unicode and come from
anyone: an emoji in an otherwise valid message, or a poison body in Arabic-Indic digits.
So the bundle asks for UTF8 in its startup packet (which outranks a role's or database's
setting), and text the database's encoding has no code for is stored escaped: the batch's
valid messages commit, the poison ones are dead-lettered with their bodies kept.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import psycopg
import pytest

from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches, create_season
from tests.integration.real_functions import POINTS_DEAD_LETTER_QUEUE, functions_for
from tests.roles import ProductionLikeDatabase, production_like_database

ROLE = "ALTER ROLE {role} IN DATABASE {db} SET "
# (the database's encoding, statements setting a client_encoding other than UTF8)
LAYOUTS: dict[str, tuple[str | None, list[str]]] = {
    "UTF8 database, client_encoding LATIN1 on the role": (
        None,
        [ROLE + "client_encoding = 'LATIN1'"],
    ),
    "UTF8 database, client_encoding EUC_JP on the database": (
        None,
        ["ALTER DATABASE {db} SET client_encoding = 'EUC_JP'"],
    ),
    "LATIN1 database": ("LATIN1", []),
    "EUC_JP database, client_encoding EUC_JP on the role": (
        "EUC_JP",
        [ROLE + "client_encoding = 'EUC_JP'"],
    ),
}
EMOJI = "Kölner Haie \N{ICE HOCKEY STICK AND PUCK}"
POISON_DIGITS = '{"matchId": "\u0661\u0662"}'  # Arabic-Indic digits: not a canonical id
POISON_JSON = '{"matchId": \N{TROPHY}}'  # not JSON at all


@pytest.fixture(params=list(LAYOUTS), ids=list(LAYOUTS))
def database(
    request: pytest.FixtureRequest, postgres_server_url: str
) -> Iterator[ProductionLikeDatabase]:
    encoding, statements = LAYOUTS[request.param]
    with production_like_database(
        postgres_server_url, "enc", encoding=encoding, statements=statements
    ) as database:
        yield database


def test_valid_messages_commit_and_poison_ones_are_dead_lettered_whatever_the_encoding(
    database: ProductionLikeDatabase,
) -> None:
    # Given four completed matches
    functions = functions_for(database.role_url)
    # (the test's own reads ask for UTF8 too, or a body would not reach it)
    with psycopg.connect(database.owner_url, autocommit=True, client_encoding="UTF8") as owner:
        season = create_season(owner, competitions=1, competitors_per_competition=4)
        completed = season.match_ids[:4]
        complete_matches(owner, completed, random.Random(3))

        # When one batch brings their messages, two carrying text outside LATIN1 and
        # EUC_JP, and two poison bodies
        valid = [json.dumps({"matchId": match_id}) for match_id in completed[:2]]
        valid += [
            json.dumps({"matchId": match_id, "note": EMOJI}, ensure_ascii=False)
            for match_id in completed[2:]
        ]
        response = functions.run_points_bodies([*valid, POISON_DIGITS, POISON_JSON])

        # Then no record is left to retry: the valid ones committed...
        assert response == {"batchItemFailures": []}
        assert actual_match_points(owner) == expected_match_points(owner)
        assert len(actual_match_points(owner)) == 8
        # ...the poison ones went to the dead-letter queue with their bodies as sent
        dead = [m.body for url, m in functions.queues.sent if url == POINTS_DEAD_LETTER_QUEUE]
        assert sorted(dead) == sorted([POISON_DIGITS, POISON_JSON])
        # ...and job_history kept a run for each, the failed ones naming their error
        runs = owner.execute(
            "SELECT status, error_kind, body FROM job_history WHERE job_type = 'points'"
            " ORDER BY status, body"
        ).fetchall()
        assert [(status, kind) for status, kind, _ in runs] == [
            *[("completed", None)] * 4,
            ("failed", "invalid_message"),
            ("failed", "invalid_message"),
        ]
        # (as sent, or escaped where the database's encoding has no code for a character)
        noted = [body for status, _, body in runs if "Haie" in body]
        assert len(noted) == 2
        poison = [body for status, _, body in runs if status == "failed"]
        assert all(body.startswith('{"matchId": ') for body in poison), poison
