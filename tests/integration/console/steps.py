"""The steps the console's tests share: signing in and posting as a browser does, and
playing the app, the points function and the dead-letter queue to give it something
to show."""

from __future__ import annotations

import random
import re
from typing import Any

import psycopg
from flask.testing import FlaskClient

from calculate_points import app as points_app
from devstack.lambda_context import LambdaContext
from testkit.events import points_bodies, sqs_event
from testkit.seed import Season, complete_matches, create_season
from tests.template_queues import TemplateQueues

HOST = "127.0.0.1:8765"
ORIGIN = f"http://{HOST}"
TOKEN = "test-login-token"
CRON_SECRET = "local-cron-secret-never-shown"


def signed_in(client: FlaskClient) -> str:
    """Opens the printed URL; returns the page's CSRF token."""
    opened = client.get(f"/?token={TOKEN}", base_url=ORIGIN)
    assert opened.status_code == 302
    page = client.get("/", base_url=ORIGIN)
    assert page.status_code == 200, page.text
    match = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def post(client: FlaskClient, path: str, token: str, data: dict[str, Any]) -> Any:
    return client.post(
        path,
        base_url=ORIGIN,
        data=data,
        headers={"Origin": ORIGIN, "X-CSRFToken": token, "Accept": "application/json"},
    )


def play(db: psycopg.Connection, played: int) -> Season:
    """A season whose first matches went through CalculatePointsFunction."""
    season = create_season(db, competitions=1, competitors_per_competition=4)
    complete_matches(db, season.match_ids[:played], random.Random(13))
    invoke_points(points_bodies(*season.match_ids[:played]))
    return season


def invoke_points(bodies: list[str]) -> None:
    context = LambdaContext.for_invocation("CalculatePointsFunction", 120)
    points_app.lambda_handler(sqs_event(bodies), context)


def send_dead_letter(stack: TemplateQueues, body: str, attributes: dict[str, str]) -> None:
    stack.sqs.send_message(
        QueueUrl=stack.urls["PointsDeadLetterQueue"],
        MessageBody=body,
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )
