"""CalculatePointsFunction and RefreshViewsFunction wired to the real stores on any
database URL, with an in-memory SQS that keeps what they send: the production-like
database tests run the handlers as Lambda would, connected as the bundle's own role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calculate_points import app as points_app
from devstack.lambda_context import LambdaContext
from matchstats.config import PointsSettings, RefreshSettings
from matchstats.db.connection import ConnectionProvider
from matchstats.db.jobs import JobStore
from matchstats.db.points import PointsStore
from matchstats.db.refresh import RefreshStore
from matchstats.points import PointsDependencies
from matchstats.refresh import RefreshDependencies
from refresh_views import app as refresh_app
from testkit.events import points_bodies, sqs_event
from tests.fakes import InMemoryQueues

REFRESH_QUEUE = "http://sqs.local/RefreshQueue"
POINTS_DEAD_LETTER_QUEUE = "http://sqs.local/PointsDeadLetterQueue"


@dataclass
class Functions:
    """CalculatePointsFunction and RefreshViewsFunction with the real stores on the
    role's connection, and an in-memory SQS that keeps what they send."""

    points: PointsDependencies
    refresh: RefreshDependencies
    queues: InMemoryQueues

    def run_points(self, *match_ids: int) -> dict[str, Any]:
        return self.run_points_bodies(points_bodies(*match_ids))

    def run_points_bodies(self, bodies: list[str]) -> dict[str, Any]:
        event = sqs_event(bodies)
        context = LambdaContext.for_invocation("CalculatePointsFunction", 120)
        return points_app.lambda_handler(event, context, deps=self.points)

    def run_refresh(self) -> dict[str, Any]:
        bodies = [message.body for url, message in self.queues.sent if url == REFRESH_QUEUE]
        self.queues.sent.clear()
        event = sqs_event(bodies, template="refresh-views.json")
        context = LambdaContext.for_invocation("RefreshViewsFunction", 120)
        return refresh_app.lambda_handler(event, context, deps=self.refresh)


def functions_for(database_url: str) -> Functions:
    """Both functions on `database_url`, each with its own connections, as in Lambda."""
    queues = InMemoryQueues()
    common = {"DATABASE_URL": database_url, "REFRESH_QUEUE_URL": REFRESH_QUEUE}
    points_settings = PointsSettings.from_env(
        {
            **common,
            "POINTS_QUEUE_URL": "http://sqs.local/PointsQueue",
            "DEAD_LETTER_QUEUE_URL": POINTS_DEAD_LETTER_QUEUE,
        }
    )
    refresh_settings = RefreshSettings.from_env(
        {**common, "DEAD_LETTER_QUEUE_URL": "http://sqs.local/RefreshDeadLetterQueue"}
    )
    points_connections = ConnectionProvider.from_settings(points_settings)
    refresh_connections = ConnectionProvider.from_settings(refresh_settings)
    return Functions(
        points=PointsDependencies(
            settings=points_settings,
            store=PointsStore(points_connections),
            jobs=JobStore(points_connections),
            queues=queues,
        ),
        refresh=RefreshDependencies(
            settings=refresh_settings,
            store=RefreshStore(refresh_connections),
            jobs=JobStore(refresh_connections),
            queues=queues,
        ),
        queues=queues,
    )
