"""In-memory stand-ins for external services, handed in through dependencies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from matchstats.db.jobs import DEFAULT_BUDGET_MS
from matchstats.errors import TransientError
from matchstats.models import (
    JobRecord,
    PointsBatchWrite,
    PointsJob,
    PointsOutcomeKind,
    PointsOutcomeRow,
    ViewRefreshDone,
    ViewRefreshRecord,
    ViewState,
)
from matchstats.queues import OutgoingMessage, Queues, RetryTicket
from matchstats.stores import Decision

# SQS's real limits (Amazon SQS API Reference, SendMessageBatch, MessageAttributeValue),
# written out here rather than imported, so that the fake checks the code's own numbers.
ENTRIES_PER_REQUEST = 10
BYTES_PER_MESSAGE = 1_048_576
BYTES_PER_REQUEST = 1_048_576


class InMemorySqs:
    """The SQS calls matchstats.queues.Queues makes, in memory, held to SQS's real limits,
    which moto's SQS does not enforce (it counts bodies only, in characters): at most 10
    entries a batch request; at most 1 MiB a message and a SendMessageBatch request,
    counting the UTF-8 body and each attribute's name, data type and value. A request
    over a limit is refused whole with SQS's error code, and nothing of it is kept."""

    def __init__(self, *, reachable: bool = True, unreachable: Sequence[str] = ()) -> None:
        self.reachable = reachable
        # Queue URLs refused as if unreachable while the others work.
        self.unreachable = set(unreachable)
        self.sent: list[tuple[str, OutgoingMessage]] = []
        # Each SendMessageBatch request taken, as (queue URL, its messages).
        self.batch_requests: list[tuple[str, list[OutgoingMessage]]] = []
        self.retries: list[tuple[str, RetryTicket]] = []

    def send_message(
        self,
        *,
        QueueUrl: str,
        MessageBody: str,
        DelaySeconds: int = 0,
        MessageAttributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._check_reachable(QueueUrl)
        message = _outgoing("0", MessageBody, DelaySeconds, MessageAttributes)
        size = _sqs_size(MessageBody, MessageAttributes)
        if size > BYTES_PER_MESSAGE:
            raise _refused("InvalidParameterValue", f"message of {size} bytes", "SendMessage")
        return {"MessageId": self._keep(QueueUrl, message)}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._check_batch(QueueUrl, Entries, "SendMessageBatch")
        total = sum(_sqs_size(e["MessageBody"], e.get("MessageAttributes")) for e in Entries)
        if total > BYTES_PER_REQUEST:
            raise _refused("BatchRequestTooLong", f"{total} bytes", "SendMessageBatch")
        request = [
            _outgoing(
                e["Id"], e["MessageBody"], e.get("DelaySeconds", 0), e.get("MessageAttributes")
            )
            for e in Entries
        ]
        self.batch_requests.append((QueueUrl, request))
        return {
            "Successful": [
                {"Id": message.entry_id, "MessageId": self._keep(QueueUrl, message)}
                for message in request
            ],
            "Failed": [],
        }

    def change_message_visibility_batch(
        self, *, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self._check_batch(QueueUrl, Entries, "ChangeMessageVisibilityBatch")
        self.retries.extend(
            (QueueUrl, RetryTicket(e["Id"], e["ReceiptHandle"], e["VisibilityTimeout"]))
            for e in Entries
        )
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def _check_reachable(self, queue_url: str) -> None:
        if not self.reachable or queue_url in self.unreachable:
            raise EndpointConnectionError(endpoint_url=queue_url)

    def _check_batch(self, queue_url: str, entries: list[Any], operation: str) -> None:
        self._check_reachable(queue_url)
        if len(entries) > ENTRIES_PER_REQUEST:
            raise _refused("TooManyEntriesInBatchRequest", f"{len(entries)} entries", operation)

    def _keep(self, queue_url: str, message: OutgoingMessage) -> str:
        self.sent.append((queue_url, message))
        return f"message-{len(self.sent)}"


class InMemoryQueues(Queues):
    """The real Queues over an InMemorySqs: keeps what is sent (`sent`, `batch_requests`)
    and the visibility changes (`retries`), or refuses it like an unreachable SQS."""

    def __init__(self, *, reachable: bool = True, unreachable: Sequence[str] = ()) -> None:
        self.sqs = InMemorySqs(reachable=reachable, unreachable=unreachable)
        super().__init__(self.sqs)  # type: ignore[arg-type]  # the calls Queues makes

    @property
    def sent(self) -> list[tuple[str, OutgoingMessage]]:
        return self.sqs.sent

    @property
    def batch_requests(self) -> list[tuple[str, list[OutgoingMessage]]]:
        return self.sqs.batch_requests

    @property
    def retries(self) -> list[tuple[str, RetryTicket]]:
        return self.sqs.retries


class ExplodingQueues(InMemoryQueues):
    """InMemoryQueues whose sends to `queue_url` (to any queue when None) fail in a way
    nobody foresaw: a KeyError, as a bug in a client library would raise."""

    def __init__(self, queue_url: str | None = None) -> None:
        super().__init__()
        self.exploding_url = queue_url

    def send(self, queue_url: str, message: OutgoingMessage) -> str:
        if self.exploding_url in (None, queue_url):
            raise KeyError("a bug in a client library")
        return super().send(queue_url, message)


def _sqs_size(body: str, attributes: Mapping[str, Any] | None) -> int:
    size = len(body.encode())
    for name, attribute in (attributes or {}).items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        value_bytes = value if isinstance(value, bytes) else str(value).encode()
        size += len(name.encode()) + len(attribute["DataType"].encode()) + len(value_bytes)
    return size


def _outgoing(
    entry_id: str, body: str, delay_seconds: int, attributes: Mapping[str, Any] | None
) -> OutgoingMessage:
    strings = {name: str(a["StringValue"]) for name, a in (attributes or {}).items()}
    return OutgoingMessage(entry_id, body, delay_seconds, strings or None)


def _refused(code: str, detail: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": f"AWS.SimpleQueueService.{code}", "Message": detail}}, operation
    )


class InMemoryPointsStore:
    """stores.PointsWriter without a database: every job's match completes (and changes)
    unless `outcomes` says otherwise by match id; `fail_with` makes every write fail as the
    database would (a TransientError), or as a bug would (anything else). Keeps each
    write's jobs and timeouts in `writes`."""

    def __init__(
        self,
        outcomes: Mapping[int, PointsOutcomeKind] | None = None,
        *,
        fail_with: Exception | None = None,
        committed_at: datetime = datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    ) -> None:
        self.outcomes = dict(outcomes or {})
        self.fail_with = fail_with
        self.committed_at = committed_at
        self.writes: list[dict[str, Any]] = []

    def write_batch(
        self,
        jobs: Sequence[PointsJob],
        *,
        started_at: datetime,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
    ) -> PointsBatchWrite:
        self.writes.append(
            {
                "jobs": list(jobs),
                "statement_timeout_ms": statement_timeout_ms,
                "lock_timeout_ms": lock_timeout_ms,
            }
        )
        if self.fail_with is not None:
            raise self.fail_with
        return PointsBatchWrite(
            outcomes=[self._outcome(job) for job in jobs],
            committed_at=self.committed_at,
            keys_changed=2,
        )

    def _outcome(self, job: PointsJob) -> PointsOutcomeRow:
        if job.match_id is None:
            kind = PointsOutcomeKind.INVALID_MESSAGE
        else:
            kind = self.outcomes.get(job.match_id, PointsOutcomeKind.OK)
        ok = kind is PointsOutcomeKind.OK
        return PointsOutcomeRow(
            job_id=job.job_id,
            match_id=job.match_id,
            outcome=kind,
            error=None if ok else (job.parse_error or f"match {job.match_id}: {kind.value}"),
            status="completed" if ok else None,
            score_version=1 if ok else None,
            changed=ok,
        )


class InMemoryRefreshStore:
    """stores.ViewRefresher without a database: each view's state is `states[view]`; a
    refresh `decide` asks for is recorded in `refreshed` and takes `duration_ms`.
    `fail_with[view]` makes that view's refresh fail as the database would."""

    def __init__(
        self,
        states: Mapping[str, ViewState],
        *,
        fail_with: Mapping[str, TransientError] | None = None,
        duration_ms: int = 40,
        changed_competitions: Mapping[str, list[int]] | None = None,
    ) -> None:
        self.states = dict(states)
        self.fail_with = dict(fail_with or {})
        self.duration_ms = duration_ms
        # A view named here reports rows changed, in these competitions, when refreshed.
        self.changed_competitions = dict(changed_competitions or {})
        self.refreshed: list[ViewRefreshRecord] = []
        self.calls: list[dict[str, Any]] = []

    def refresh_view(
        self,
        view_name: str,
        decide: Decision,
        *,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
        full: bool = False,
    ) -> tuple[ViewState, ViewRefreshDone | None]:
        self.calls.append(
            {
                "view": view_name,
                "statement_timeout_ms": statement_timeout_ms,
                "lock_timeout_ms": lock_timeout_ms,
                "full": full,
            }
        )
        if view_name in self.fail_with:
            raise self.fail_with[view_name]
        state = self.states[view_name]
        record = decide(state)
        if record is None:
            return state, None
        self.refreshed.append(record)
        finished_at = state.now + timedelta(milliseconds=self.duration_ms)
        changed = self.changed_competitions.get(view_name)
        return state, ViewRefreshDone(
            finished_at=finished_at,
            duration_ms=self.duration_ms,
            changed=changed is not None,
            competition_ids=changed or [],
        )


class InMemoryJobStore:
    """stores.JobRecorder without a database: keeps `(job_type, record)` pairs in
    `recorded`, with each call's budget in `budgets`; `fail_with` refuses every call."""

    def __init__(self, *, fail_with: TransientError | None = None) -> None:
        self.fail_with = fail_with
        self.recorded: list[tuple[str, JobRecord]] = []
        self.budgets: list[int] = []

    def record(
        self,
        job_type: str,
        records: Sequence[JobRecord],
        *,
        started_at: datetime,
        budget_ms: int = DEFAULT_BUDGET_MS,
    ) -> None:
        self.budgets.append(budget_ms)
        if self.fail_with is not None:
            raise self.fail_with
        self.recorded.extend((job_type, record) for record in records)


@dataclass
class SecretStore:
    """Secrets Manager behind a cache: a plain fetch returns the cached value, a forced
    fetch the stored one (and caches it)."""

    stored: str
    cached: str = ""
    forced_fetches: int = 0

    def __post_init__(self) -> None:
        self.cached = self.cached or self.stored

    def fetch(self, force: bool) -> str:
        if force:
            self.forced_fetches += 1
            self.cached = self.stored
        return self.cached


@dataclass
class FakeClock:
    """A monotonic clock that moves only when a test moves `now`, or sleeps on it."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeSecretsProvider:
    """Stands in for Powertools' SecretsProvider: returns `value` or raises it."""

    value: Any
    calls: list[dict[str, Any]] = field(default_factory=list)

    def get(self, name: str, **options: Any) -> Any:
        self.calls.append({"name": name, **options})
        if isinstance(self.value, Exception):
            raise self.value
        return self.value
