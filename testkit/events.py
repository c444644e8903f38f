"""Lambda events built from the sample events in events/, the one source of sample
events for `sam local invoke`, `make invoke`, the tests and the benchmark; and the
received messages that the handlers hand to the logic, for tests of the logic alone."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matchstats.models import ReceivedMessage

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return data


def sqs_event(
    bodies: Iterable[str], *, template: str = "calculate-points.json", receive_count: int = 1
) -> dict[str, Any]:
    """An SQS event shaped like the sample file's first record, one record per body."""
    first = load_event(template)["Records"][0]
    records = []
    for body in bodies:
        record = copy.deepcopy(first)
        record["messageId"] = str(uuid.uuid4())
        record["receiptHandle"] = f"local-{uuid.uuid4().hex}"
        record["body"] = body
        record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's checksum
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        records.append(record)
    return {"Records": records}


def points_bodies(*match_ids: int) -> list[str]:
    return [json.dumps({"matchId": match_id}) for match_id in match_ids]


def received_messages(*bodies: object, receive_count: int = 1) -> list[ReceivedMessage]:
    """One message a body, ids m0, m1, ... and receipt handles r0, r1, ...; a body that
    is not text is sent as its JSON."""
    return [
        ReceivedMessage(
            message_id=f"m{number}",
            receipt_handle=f"r{number}",
            body=body if isinstance(body, str) else json.dumps(body),
            receive_count=receive_count,
        )
        for number, body in enumerate(bodies)
    ]
