"""Sample events for the tests: the JSON files in events/ are the one source, and
devstack.events builds the variants (the benchmark uses the same factories)."""

from __future__ import annotations

from devstack.events import EVENTS_DIR, load_event, points_bodies, sqs_event

__all__ = ["EVENTS_DIR", "load_event", "points_bodies", "sqs_event"]
