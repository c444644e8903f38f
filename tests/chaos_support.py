"""What the chaos test (tests/e2e/test_chaos.py) needs beside the local stack: the messages
it sends, a log of what the points function did with each, reading dead-letter queues,
and the figures it prints.

Every message carries a message attribute `chaos.id`. The consumers forward attributes
they do not own to the dead-letter queue, SQS keeps them when it dead-letters a message,
and a redrive sends them back: so each message can be followed from its send to its
processing or to a dead-letter queue, through any number of retries, without changing
the body the contract fixes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from devstack.lambda_sqs import batch_item_failures
from matchstats.queues import (
    ERROR_KIND_ATTRIBUTE,
    REASON_ATTRIBUTE,
    SQS_BATCH_LIMIT,
    message_size,
    pack_requests,
)

CHAOS_ID = "chaos.id"


class Kind(StrEnum):
    VALID = "valid"
    BAD_JSON = "bad JSON"
    MISSING_FIELD = "missing field"
    UNKNOWN_MATCH = "unknown match"
    MISSING_SCORES = "completed without scores"


# The reason the points function must give for each kind of poison.
EXPECTED_ERROR = {
    Kind.BAD_JSON: ("invalid_message", "body is not valid JSON"),
    Kind.MISSING_FIELD: ("invalid_message", "matchId: Field required"),
    Kind.UNKNOWN_MATCH: ("match_not_found", "does not exist"),
    Kind.MISSING_SCORES: ("missing_scores", "is completed without both scores"),
}
POISON_KINDS = tuple(EXPECTED_ERROR)


@dataclass(frozen=True)
class ChaosMessage:
    chaos_id: str
    body: str
    kind: Kind
    match_id: int | None = None

    @property
    def poison(self) -> bool:
        return self.kind is not Kind.VALID


def send_all(sqs: Any, queue_url: str, messages: Sequence[ChaosMessage]) -> None:
    """SendMessageBatch within SQS's limits (pack_requests), each message tagged with its
    chaos id; an entry the queue refuses is sent again."""
    entries: list[dict[str, Any]] = [
        {
            "MessageBody": message.body,
            "MessageAttributes": {
                CHAOS_ID: {"DataType": "String", "StringValue": message.chaos_id}
            },
        }
        for message in messages
    ]
    for request in pack_requests(
        entries, lambda entry: message_size(entry["MessageBody"], entry["MessageAttributes"])
    ):
        pending = {str(i): entry for i, entry in enumerate(request)}
        for _ in range(5):
            response = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": entry_id, **entry} for entry_id, entry in pending.items()],
            )
            pending = {f["Id"]: pending[f["Id"]] for f in response.get("Failed", [])}
            if not pending:
                break
        assert not pending, f"the queue refused {len(pending)} messages five times"


@dataclass(frozen=True)
class DeadLetter:
    chaos_id: str | None
    error_kind: str | None
    reason: str | None
    body: str


def drain_dead_letters(sqs: Any, queue_url: str) -> list[DeadLetter]:
    """Receives and deletes every message on a dead-letter queue (the test is over)."""
    found: list[DeadLetter] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=SQS_BATCH_LIMIT,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
            VisibilityTimeout=60,
        ).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            attributes = message.get("MessageAttributes", {})

            def text(name: str, attrs: dict[str, Any] = attributes) -> str | None:
                value = attrs.get(name, {}).get("StringValue")
                return str(value) if value is not None else None

            found.append(
                DeadLetter(
                    text(CHAOS_ID),
                    text(ERROR_KIND_ATTRIBUTE),
                    text(REASON_ATTRIBUTE),
                    message["Body"],
                )
            )
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


Handler = Callable[[dict[str, Any], Any], Any]


class DeliveryLog:
    """Wraps a function for an event source mapping and notes, per chaos id, each record
    the function completed and each it reported failed (to be retried)."""

    def __init__(self, function: Handler) -> None:
        self._function = function
        self._lock = threading.Lock()
        self.completed: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.invocations = 0
        self.function_errors = 0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        records = event.get("Records", [])
        ids = [record["messageId"] for record in records]
        chaos_ids = {
            record["messageId"]: record["messageAttributes"][CHAOS_ID]["stringValue"]
            for record in records
        }
        try:
            response = self._function(event, context)
        except Exception:
            self._note(chaos_ids.values(), [], error=True)
            raise
        failed = batch_item_failures(response, ids)
        failed = frozenset(ids) if failed is None else failed
        self._note([chaos_ids[i] for i in ids if i not in failed], [chaos_ids[i] for i in failed])
        return response

    def _note(self, completed: Iterable[str], failed: Iterable[str], error: bool = False) -> None:
        with self._lock:
            self.invocations += 1
            self.function_errors += error
            self.completed.update(completed)
            self.failures.update(failed)

    @property
    def records_completed(self) -> int:
        with self._lock:
            return sum(self.completed.values())


@dataclass
class ChaosFigures:
    completions: int = 0
    corrections: int = 0
    voids: int = 0
    sent: int = 0
    sent_valid: int = 0
    sent_poison: Counter[str] = field(default_factory=Counter)
    processed: int = 0
    processed_again: int = 0
    retried: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    refresh_dead_lettered: int = 0
    redriven: int = 0
    redriven_transient: int = 0
    lost: int = 0
    double_counted: int = 0
    match_points_rows: int = 0
    points_total: int = 0
    outage_s: float | None = None
    db_pooler: str = "none"
    seconds: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        poison = sum(self.sent_poison.values())
        lines = [
            (
                "matches",
                f"{self.completions} completed, {self.corrections} corrected, {self.voids} voided",
            ),
            (
                "sent",
                f"{self.sent} ({self.sent_valid} valid: every message 3 times, shuffled;"
                f" {poison} poison = {100 * poison / max(self.sent, 1):.1f}%:"
                f" {', '.join(f'{n} {k}' for k, n in sorted(self.sent_poison.items()))})",
            ),
            (
                "database",
                "direct"
                if self.db_pooler == "none"
                else f"through PgBouncer in {self.db_pooler} mode, DB_POOLER={self.db_pooler}",
            ),
            (
                "database outage",
                "none"
                if self.outage_s is None
                else f"{self.outage_s:.1f} s, in the middle of the run",
            ),
            (
                "processed",
                f"{self.processed} valid messages completed"
                f" ({self.processed_again} of them completed again after a redelivery)",
            ),
            ("retried", f"{self.retried} record failures retried with backoff"),
            (
                "dead-lettered",
                ", ".join(f"{k}: {n}" for k, n in sorted(self.dead_lettered.items()))
                + f"; refresh requests: {self.refresh_dead_lettered}",
            ),
            (
                "redriven",
                f"{self.redriven} by `matchstats dlq redrive points`"
                f" ({self.redriven_transient} transient; the poison came back with its reason),"
                f" {self.refresh_dead_lettered} by `matchstats dlq redrive refresh`",
            ),
            ("lost", f"{self.lost} (must be 0)"),
            ("double-counted", f"{self.double_counted} (must be 0)"),
            (
                "match_points",
                f"{self.match_points_rows} rows, {self.points_total} points in"
                " all, equal to an independent recomputation; so are both views",
            ),
            ("run time", ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())),
        ]
        width = max(len(label) for label, _ in lines)
        return "\nchaos figures\n" + "\n".join(
            f"  {label:<{width}}  {value}" for label, value in lines
        )


class _EndOfRunReport:
    """A pytest plugin, registered by the first test with figures to show, that prints
    them in the terminal summary: at the end of the run, whether output is captured or not."""

    NAME = "matchstats-figures"

    def __init__(self) -> None:
        self.sections: list[tuple[str, str]] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for title, text in self.sections:
            terminalreporter.write_sep("=", title)
            terminalreporter.write_line(text.strip("\n"))


def report_at_end(config: Any, title: str, text: str) -> None:
    """Prints `text` now (seen at once with `pytest -s`, and kept in a failed test's
    captured output) and, when output is captured, again at the end of the run."""
    print(text)
    if config.getoption("capture") == "no":
        return
    plugin = config.pluginmanager.get_plugin(_EndOfRunReport.NAME)
    if plugin is None:
        plugin = _EndOfRunReport()
        config.pluginmanager.register(plugin, _EndOfRunReport.NAME)
    plugin.sections.append((title, text))
