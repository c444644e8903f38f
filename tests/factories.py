"""Sample events for the tests, from testkit.events (the JSON files in events/ are the one
source). New tests import testkit.events directly."""

from __future__ import annotations

from testkit.events import EVENTS_DIR, load_event, points_bodies, sqs_event

__all__ = ["EVENTS_DIR", "load_event", "points_bodies", "sqs_event"]
