"""What changed, told to the app (SPEC section 6b): after a refresh that changed rows, one
`StandingsRefreshed` event on the default EventBridge bus names the views and the
competitions whose rows changed, so a serverless app can revalidate exactly those pages.
The only code that calls EventBridge.

A publish that fails is retried (botocore's standard retries for throttling and server
errors, then the entries EventBridge reports failed, a few times more) and then given up
with a log line: the refresh it tells of has committed, and a missed event only leaves a
cache to its own expiry. A client that cannot be built (no region, a malformed endpoint
override) is given up at once: building it again would fail the same way. Publishing
never raises, whatever the error, and never outlasts its time budget:
botocore's default timeouts (60 s to connect, 60 s to read, per attempt) would let an
unreachable endpoint, such as a VPC with no route to EventBridge, hold the invocation
past the Lambda timeout, so every attempt here is bounded (EVENTS_CLIENT_CONFIG) and no
attempt starts that could end after the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from matchstats.errors import DeadlineError, MatchstatsError
from matchstats.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
else:
    EventBridgeClient = Any

SOURCE = "matchstats"
DETAIL_TYPE = "StandingsRefreshed"
EVENT_BUS = "default"
# PutEvents takes 10 entries a call and 256 KiB in all; 1,000 ids keep an entry far below.
COMPETITIONS_PER_EVENT = 1_000
_ENTRIES_PER_CALL = 10
_ATTEMPTS = 3
_RETRY_PAUSE_S = 0.2
# Per request: a reachable EventBridge endpoint answers in well under a second.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 3.0
# botocore's attempts per put_events call, the first included (standard mode retries
# throttling, 5xx and timeouts).
_CLIENT_ATTEMPTS = 2
# The longest one put_events call can take: every botocore attempt timing out.
_CALL_WORST_S = _CLIENT_ATTEMPTS * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S)
# How long publish may take when the caller gives no budget.
DEFAULT_BUDGET_S = 15.0
EVENTS_CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    retries={"total_max_attempts": _CLIENT_ATTEMPTS, "mode": "standard"},
)


class EntriesRejectedError(MatchstatsError):
    """EventBridge answered but did not accept an entry (its ErrorCode and ErrorMessage)."""


class StandingsRefreshed(BaseModel):
    """The event's `detail`: {"views": [...], "competitionIds": [...], "finishedAt": ...}."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    views: list[str]
    competition_ids: list[int] = Field(default_factory=list)
    # The database clock when the last of the refreshes committed (ISO 8601, UTC offset).
    finished_at: datetime


def default_events_client() -> EventBridgeClient:
    import boto3

    client: EventBridgeClient = boto3.session.Session().client(
        "events", config=EVENTS_CLIENT_CONFIG
    )
    return client


class StandingsEvents:
    """Publishes StandingsRefreshed events; the client is `client`, or else built by
    `client_factory` (boto3's by default) on first use, so that building it can fail
    only inside publish, which never raises."""

    def __init__(
        self,
        client: EventBridgeClient | None = None,
        *,
        client_factory: Callable[[], EventBridgeClient] = default_events_client,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._client_factory = client_factory
        self._sleep = sleep
        self._clock = clock
        # Why the last publish failed (None after one that succeeded), for a caller that
        # tells a person: the exception building the client or calling EventBridge, an
        # EntriesRejectedError, or a DeadlineError when the budget ran out first.
        self.last_error: Exception | None = None

    def publish(self, refreshed: StandingsRefreshed, *, budget_s: float = DEFAULT_BUDGET_S) -> bool:
        """Puts the event (several, when it names more than COMPETITIONS_PER_EVENT
        competitions) within `budget_s` seconds: no put_events call starts that could
        end later (each takes at most 2 x (2 s connect + 3 s read)). Returns whether
        every entry was accepted; never raises (the reason is in `last_error`)."""
        self.last_error = None
        deadline = self._clock() + budget_s
        pending = [_entry(part) for part in _parts(refreshed)]
        for attempt in range(1, _ATTEMPTS + 1):
            pending = self._put(pending, deadline)
            if not pending:
                return True
            if self._client is None:  # not built: another attempt fails the same way
                break
            pause = _RETRY_PAUSE_S * attempt
            if attempt == _ATTEMPTS or self._clock() + pause + _CALL_WORST_S > deadline:
                break
            self._sleep(pause)
        if self.last_error is None:
            self.last_error = DeadlineError(f"no PutEvents call fits in {budget_s:g} s")
        logger.error(
            "StandingsRefreshed not published; app caches wait for their own expiry",
            extra={
                "entries": len(pending),
                "views": refreshed.views,
                "error": str(self.last_error),
                "error_type": type(self.last_error).__name__,
            },
        )
        return False

    def _put(self, entries: Sequence[dict[str, Any]], deadline: float) -> list[dict[str, Any]]:
        """The entries not accepted (the ones not tried for lack of time among them)."""
        if self._client is None:
            try:
                self._client = self._client_factory()
            except Exception as exc:
                self.last_error = exc
                return list(entries)
        failed: list[dict[str, Any]] = []
        for start in range(0, len(entries), _ENTRIES_PER_CALL):
            chunk = list(entries[start : start + _ENTRIES_PER_CALL])
            if self._clock() + _CALL_WORST_S > deadline:
                failed.extend(chunk)
                continue
            try:
                response = self._client.put_events(Entries=chunk)  # type: ignore[arg-type,unused-ignore]
            except Exception as exc:
                logger.warning(
                    "PutEvents failed",
                    extra={"error": str(exc), "error_type": type(exc).__name__},
                )
                self.last_error = exc
                failed.extend(chunk)
                continue
            results = response.get("Entries", [])
            for entry, result in zip(chunk, results, strict=False):
                if result.get("ErrorCode"):
                    self.last_error = EntriesRejectedError(_rejection(result))
                    failed.append(entry)
        return failed


def _rejection(result: Any) -> str:
    code, message = str(result["ErrorCode"]), result.get("ErrorMessage")
    return f"{code}: {message}" if message else code


def _parts(refreshed: StandingsRefreshed) -> list[StandingsRefreshed]:
    ids = refreshed.competition_ids
    if len(ids) <= COMPETITIONS_PER_EVENT:
        return [refreshed]
    return [
        refreshed.model_copy(update={"competition_ids": ids[i : i + COMPETITIONS_PER_EVENT]})
        for i in range(0, len(ids), COMPETITIONS_PER_EVENT)
    ]


def _entry(refreshed: StandingsRefreshed) -> dict[str, Any]:
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": refreshed.model_dump_json(by_alias=True),
        "EventBusName": EVENT_BUS,
    }
