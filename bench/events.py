"""Lambda events for the benchmark, built from the sample events in events/ (the one
source of sample events)."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


@cache
def _sample(name: str) -> str:
    return (EVENTS_DIR / name).read_text()


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(_sample(name))
    return event


def sqs_event(bodies: Sequence[str], *, sample: str = "calculate-points.json") -> dict[str, Any]:
    """An SQS event shaped like the sample's first record, one record per body."""
    first = load_event(sample)["Records"][0]
    records = []
    for body in bodies:
        record = copy.deepcopy(first)
        record["messageId"] = str(uuid.uuid4())
        record["receiptHandle"] = f"bench-{uuid.uuid4().hex}"
        record["body"] = body
        record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's checksum
        records.append(record)
    return {"Records": records}


def points_bodies(match_ids: Sequence[int]) -> list[str]:
    return [json.dumps({"matchId": match_id}) for match_id in match_ids]
