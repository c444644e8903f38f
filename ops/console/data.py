"""What the console shows, read through the same stores and queue calls as the
`matchstats` command, and what it does, as the plain data of ops/console/rows.py that the
HTML templates and the JSON endpoints both render. Nothing here holds a credential: queue
URLs, the database URL and the cron secret stay in the Context."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from matchstats.errors import MatchstatsError
from matchstats.messages import RefreshReason, RefreshScope
from matchstats.models import JobStatus
from matchstats.refresh_requests import enqueue_refresh
from ops import dlq, status
from ops import jobs as job_fates
from ops.console.rows import (
    ActionResult,
    DeadLetterQueue,
    DeadLetterRow,
    Decision,
    JobDetail,
    JobRow,
    KindGroup,
    Overview,
    QueueRow,
    ViewRow,
    dead_letter_row,
)
from ops.context import Context
from ops.settings import DEAD_LETTER_PAIRS, QueueName
from ops.sqs import oldest_message_ages
from ops.store import JobRun

RECENT_DECISIONS = 6
DEAD_LETTER_SCAN = 200
OUTCOMES = ("executed", "covered", "unchanged")


class ConsoleData:
    """The console's reads and actions over one Context. A Context holds one database
    connection, so calls are serialised."""

    def __init__(
        self, context: Context, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._ctx = context
        self._lock = threading.Lock()
        self._now = now

    def now(self) -> datetime:
        return self._now()

    @contextmanager
    def _serialised(self) -> Iterator[Context]:
        with self._lock:
            yield self._ctx

    def overview(self) -> Overview:
        with self._serialised() as ctx:
            queues = status.queue_statuses(
                ctx.settings, ctx.queues, lambda urls: oldest_message_ages(ctx.aws.cloudwatch, urls)
            )
            database: status.DatabaseStatus | None = None
            problem: str | None = None
            decisions = []
            try:
                database = status.database_status(ctx.store)
                decisions = ctx.store.view_outcomes()
            except MatchstatsError as exc:
                problem = str(exc)
        queue_rows = []
        for q in queues:
            retries = database.retries_of(q.queue) if database else []
            queue_rows.append(
                QueueRow(
                    queue=q.queue.value,
                    visible=q.depth.visible if q.depth else None,
                    in_flight=q.depth.in_flight if q.depth else None,
                    delayed=q.depth.delayed if q.depth else None,
                    oldest_s=q.oldest_age_s,
                    waiting_retry=len(retries),
                    next_attempt_at=retries[0].next_attempt_at if retries else None,
                    next_attempt_subject=retries[0].run.subject if retries else None,
                    problem=q.problem,
                )
            )
        views = []
        for v in database.views if database else []:
            mine = [d for d in decisions if d.view_name == v.view_name]
            counts = Counter(d.outcome.value for d in mine)
            views.append(
                ViewRow(
                    view_name=v.view_name,
                    last_refreshed_at=v.last_finished_at,
                    age_s=(v.now - v.last_finished_at).total_seconds()
                    if v.last_finished_at
                    else None,
                    took_ms=v.last_duration_ms,
                    freshness_ms=v.last_freshness_ms,
                    changes_waiting=v.changes_waiting,
                    requests={outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
                    recent=[
                        Decision(d.outcome.value, d.finished_at, d.subject)
                        for d in mine[:RECENT_DECISIONS]
                    ],
                )
            )
        return Overview(queue_rows, views, problem, self._now())

    def standings(self) -> dict[str, list[dict[str, Any]]]:
        """Competition name -> its table rows, best first."""
        with self._serialised() as ctx:
            rows = ctx.store.standings()
        tables: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            tables.setdefault(row.competition, []).append(row.model_dump())
        return tables

    def jobs(
        self,
        *,
        job_type: str | None = None,
        status_filter: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[JobRow]:
        with self._serialised() as ctx:
            rows = ctx.store.job_history(
                job_type=job_type,
                status=JobStatus(status_filter) if status_filter else None,
                subject=subject,
                since=since,
                until=until,
                limit=limit,
            )
        return self._job_rows(rows)

    def _job_rows(self, rows: list[JobRun]) -> list[JobRow]:
        fates = job_fates.fates(rows)
        now = self._now()
        return [
            JobRow(
                id=r.id,
                job_type=r.job_type,
                job_id=r.job_id,
                subject=r.subject,
                status=r.status.value,
                attempts=r.attempts,
                outcome=job_fates.describe_fate(r, fates[r.id], now),
                error_kind=r.error_kind,
                error=r.error,
                finished_at=r.finished_at,
                duration_ms=r.duration_ms,
            )
            for r in rows
        ]

    def job(self, key: str) -> JobDetail | None:
        with self._serialised() as ctx:
            runs = ctx.store.job_runs(key)
            if not runs:
                return None
            latest = runs[-1]
            fate = job_fates.fate_of(latest, later_runs=latest.later_runs)
            copies: list[str] = []
            if fate.fate is job_fates.Fate.DEAD_LETTERED:
                pair = DEAD_LETTER_PAIRS[latest.job_type]
                try:
                    url = ctx.settings.queue_url(pair.dead_letter)
                    listed = dlq.peek(ctx.queues, url, limit=DEAD_LETTER_SCAN).messages
                    chosen = dlq.Selection(message_id=latest.job_id)
                    copies = [letter.message_id for letter in listed if chosen.matches(letter)]
                except MatchstatsError:
                    copies = []
        return JobDetail(
            job_id=latest.job_id,
            job_type=latest.job_type,
            subject=latest.subject,
            state=job_fates.describe_fate(latest, fate, self._now()),
            body=latest.body,
            error_kind=latest.error_kind,
            error=latest.error,
            view_outcomes={k: v.value for k, v in (latest.view_outcomes or {}).items()},
            runs=self._job_rows(runs),
            dead_letter_copies=copies,
        )

    def dead_letters(self) -> list[DeadLetterQueue]:
        """Each dead-letter queue's messages, grouped by error kind. Read with dlq.peek,
        which hides no message: a redrive or another reader running meanwhile still gets
        every one. The page asks for this on demand, never on a timer."""
        result = []
        for queue, pair in DEAD_LETTER_PAIRS.items():
            with self._serialised() as ctx:
                try:
                    url = ctx.settings.queue_url(pair.dead_letter)
                    listed = dlq.peek(ctx.queues, url, limit=DEAD_LETTER_SCAN)
                except MatchstatsError as exc:
                    result.append(DeadLetterQueue(queue, pair.dead_letter.value, [], str(exc)))
                    continue
            groups: dict[str, list[DeadLetterRow]] = {}
            for letter in listed.messages:
                groups.setdefault(letter.kind, []).append(dead_letter_row(letter))
            result.append(
                DeadLetterQueue(
                    queue,
                    pair.dead_letter.value,
                    [KindGroup(kind, rows) for kind, rows in sorted(groups.items())],
                    approximate_total=listed.approximate_total,
                )
            )
        return result

    def preview(self, queue: str, selection: dlq.Selection) -> list[DeadLetterRow]:
        """The dead letters an action would take, for its confirmation (dlq.peek: none
        is hidden while the operator decides)."""
        pair = DEAD_LETTER_PAIRS[queue]
        with self._serialised() as ctx:
            url = ctx.settings.queue_url(pair.dead_letter)
            listed = dlq.peek(ctx.queues, url, limit=DEAD_LETTER_SCAN)
        return [dead_letter_row(letter) for letter in listed.messages if selection.matches(letter)]

    def discard(self, queue: str, message_ids: frozenset[str]) -> ActionResult:
        """Deletes exactly the confirmed dead letters."""
        pair = DEAD_LETTER_PAIRS[queue]
        with self._serialised() as ctx:
            url = ctx.settings.queue_url(pair.dead_letter)
            done = dlq.discard(ctx.queues, url, dlq.Selection(confirmed_ids=message_ids))
        return ActionResult(
            done.done == len(message_ids),
            f"discarded {done.done} of {len(message_ids)} message(s) from {pair.dead_letter.value}",
        )

    def redrive(self, queue: str, message_ids: frozenset[str]) -> ActionResult:
        """Moves exactly the confirmed dead letters back to their source queue."""
        pair = DEAD_LETTER_PAIRS[queue]
        with self._serialised() as ctx:
            moved = dlq.redrive_selected(
                ctx.queues,
                ctx.settings.queue_url(pair.dead_letter),
                ctx.settings.queue_url(pair.source),
                dlq.Selection(confirmed_ids=message_ids),
            )
        return ActionResult(
            moved.done == len(message_ids),
            f"moved {moved.done} of {len(message_ids)} message(s) from"
            f" {pair.dead_letter.value} to {pair.source.value}",
        )

    def refresh(self, scope: RefreshScope) -> ActionResult:
        """`matchstats refresh --force`: a forced manual request on RefreshQueue."""
        with self._serialised() as ctx:
            message_id = enqueue_refresh(
                ctx.settings.queue_url(QueueName.REFRESH),
                scope=scope,
                reason=RefreshReason.MANUAL,
                force=True,
                sqs_client=ctx.aws.sqs,
            )
        return ActionResult(
            True, f"forced refresh of {scope.value} requested (message {message_id})"
        )

    def close(self) -> None:
        with self._lock:
            self._ctx.close()
