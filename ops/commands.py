"""The `matchstats` commands: each calls the logic or data-access functions and prints
plain text; errors are raised and become one line in ops.cli.main. The `dlq` commands are
ops/dlq_commands.py's."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from matchstats.errors import MatchstatsError
from matchstats.events import StandingsEvents, StandingsRefreshed
from matchstats.messages import REFRESHABLE_VIEWS, RefreshReason, RefreshScope
from matchstats.models import JobHistoryRow, JobStatus, StandingsMode
from matchstats.refresh import ViewDecision
from matchstats.refresh_requests import enqueue_refresh
from ops import dlq, recompute, refresh_now, status
from ops import jobs as job_fates
from ops.aws import describe, queue_label
from ops.context import Context
from ops.render import ProgressBar, age, duration, printable, shorten, table, timestamp
from ops.settings import DEAD_LETTER_PAIRS, QueueName
from ops.sqs import oldest_message_ages
from ops.store import JobRun

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def error(message: str, code: int = EXIT_FAILED) -> int:
    """Prints `message` as one line on stderr, escaped (it may hold what the operator typed
    or a library's text quoting it), and returns the exit status."""
    notice(f"error: {message}")
    return code


def notice(message: str) -> None:
    """Prints `message` as one line on stderr, escaped like error's, for what went wrong
    but fails nothing."""
    print(f"matchstats: {printable(' '.join(message.split()))}", file=sys.stderr)


def migrate(ctx: Context) -> int:
    applied = ctx.store.migrate()
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("the database is up to date: no migration to apply")
    if ctx.args.standings:
        mode = StandingsMode(ctx.args.standings)
        started = time.monotonic()
        if ctx.store.set_standings_mode(mode):
            took = duration(time.monotonic() - started)
            print(
                f"standings are now {mode.value}: rebuilt from match_points; the switch took"
                f" {took}, waits for locks included"
            )
            _tell_the_app_of_the_rebuild(ctx)
        else:
            print(f"standings are already {mode.value}: nothing to switch")
    return EXIT_OK


def show_status(ctx: Context) -> int:
    queues = status.queue_statuses(
        ctx.settings,
        ctx.queues,
        lambda urls: oldest_message_ages(ctx.aws.cloudwatch, urls),
    )
    database: status.DatabaseStatus | None = None
    database_error: MatchstatsError | None = None
    try:
        database = status.database_status(ctx.store)
    except MatchstatsError as exc:
        database_error = exc
    now = datetime.now(UTC)
    print("Queues")
    print(
        table(
            ("queue", "visible", "in flight", "delayed", "oldest", "note"),
            [
                (
                    q.queue.value,
                    q.depth.visible if q.depth else None,
                    q.depth.in_flight if q.depth else None,
                    q.depth.delayed if q.depth else None,
                    duration(q.oldest_age_s),
                    q.problem or _retry_note(database, q.queue, now),
                )
                for q in queues
            ],
            indent="  ",
        )
    )
    print("  (oldest: CloudWatch ApproximateAgeOfOldestMessage; - without a recent datapoint)")
    print()
    if database is None:
        assert database_error is not None
        # The queue figures above still stand; the error says what is missing.
        print("Views and jobs: database unavailable")
        return error(str(database_error))
    print("Views")
    print(
        table(
            (
                "view",
                "last refreshed",
                "ago",
                "took",
                "mode",
                "keys waiting",
                "oldest change",
                "changes waiting",
            ),
            [
                (
                    v.view_name,
                    timestamp(v.last_finished_at) if v.last_finished_at else "never",
                    age(v.last_finished_at, v.now),
                    duration(v.last_duration_ms / 1000 if v.last_duration_ms is not None else None),
                    v.mode.value,
                    v.keys_waiting,
                    age(v.changed_at, v.now),
                    v.changes_waiting,
                )
                for v in database.views
            ],
            indent="  ",
        )
    )
    print()
    print("Latest job failures")
    if database.recent_failures:
        print(_jobs_table(database.recent_failures))
    else:
        print("  none")
    unread = [q.queue.value for q in queues if q.problem]
    if unread:
        return error(f"could not read {', '.join(unread)} (see the note column)")
    return EXIT_OK


def _retry_note(database: status.DatabaseStatus | None, queue: QueueName, now: datetime) -> str:
    """In flight because they wait out a retry backoff: how many, and the next attempt."""
    retries = database.retries_of(queue) if database else []
    if not retries:
        return ""
    first = retries[0].next_attempt_at
    seconds = (first - now).total_seconds()
    when = f"in {seconds:.0f} s" if seconds > 0 else "due now"
    return (
        f"{len(retries)} waiting to retry; next attempt {when} ({first:%H:%M:%S}),"
        f" {retries[0].run.subject}"
    )


def jobs(ctx: Context) -> int:
    rows = ctx.store.job_history(
        job_type=ctx.args.type,
        status=JobStatus.FAILED if ctx.args.failed else None,
        subject=ctx.args.subject,
        limit=ctx.args.limit,
    )
    if not rows:
        print("no job runs match")
        return EXIT_OK
    print(_jobs_table(rows, indent=""))
    print(f"{len(rows)} run(s), newest first; `matchstats jobs show ID` for one job's detail")
    return EXIT_OK


def _jobs_table(rows: Sequence[JobRun], indent: str = "  ") -> str:
    now = datetime.now(UTC)
    fate_by_id = job_fates.fates(rows)
    return table(
        (
            "id",
            "finished",
            "type",
            "status",
            "subject",
            "attempts",
            "took",
            "outcome",
            "job id",
            "error",
        ),
        [
            (
                j.id,
                j.finished_at,
                j.job_type,
                j.status.value,
                j.subject,
                j.attempts,
                duration(j.duration_ms / 1000),
                job_fates.describe_fate(j, fate_by_id[j.id], now),
                shorten(j.job_id, 40),
                f"{j.error_kind}: {j.error}" if j.error_kind and j.error else j.error or "",
            )
            for j in rows
        ],
        indent=indent,
    )


def job_show(ctx: Context) -> int:
    runs = ctx.store.job_runs(ctx.args.id)
    if not runs:
        return error(
            f"no job run with id {ctx.args.id} (a job_history id or the message id it ran"
            " for; the history keeps the last 100 completed and 50 failed runs of each type)"
        )
    latest = runs[-1]
    now = datetime.now(UTC)
    fate = job_fates.fate_of(latest, later_runs=latest.later_runs)
    print(f"job {printable(latest.job_id)} ({latest.job_type}): {printable(latest.subject or '-')}")
    print(f"  state      {job_fates.describe_fate(latest, fate, now)}")
    if latest.view_outcomes:
        for view, outcome in sorted(latest.view_outcomes.items()):
            print(f"  {view:<24} {outcome.value}")
    if latest.error:
        print(f"  error kind {printable(latest.error_kind or '-')}")
        print(f"  reason     {printable(latest.error)}")
    body = printable(latest.body) if latest.body is not None else "- (not recorded)"
    print(f"  body       {body}")
    print()
    print(
        table(
            ("run", "started", "finished", "attempt", "status", "took", "error"),
            [
                (
                    run.id,
                    run.started_at,
                    run.finished_at,
                    run.attempts,
                    run.status.value,
                    duration(run.duration_ms / 1000),
                    run.error or "",
                )
                for run in runs
            ],
            indent="  ",
        )
    )
    if fate.fate is job_fates.Fate.DEAD_LETTERED:
        _print_dead_letter_copy(ctx, latest)
    return EXIT_OK


def _print_dead_letter_copy(ctx: Context, run: JobHistoryRow) -> None:
    """Where the failed job's message waits now: its copy in the dead-letter queue."""
    pair = DEAD_LETTER_PAIRS[run.job_type]
    try:
        url = ctx.settings.queue_url(pair.dead_letter)
        copies = dlq.select(ctx.queues, url, dlq.Selection(message_id=run.job_id))
    except MatchstatsError as exc:
        print(f"\n  dead-letter copy: not looked up ({printable(str(exc))})")
        return
    print()
    if not copies:
        print(f"  dead-letter copy: none in {pair.dead_letter.value} (discarded or redriven)")
    for copy in copies:
        print(
            f"  dead-letter copy: message {copy.message_id} in {pair.dead_letter.value}"
            f" (matchstats.sourceMessageId {printable(copy.source_message_id)}); redrive it with"
            f" `matchstats dlq redrive {run.job_type} --id {copy.message_id}`"
        )


def recompute_points(ctx: Context) -> int:
    args = ctx.args
    matches = recompute.select_matches(
        ctx.store,
        match_ids=args.match,
        competition_ids=args.competition,
    )
    what = (
        f"match(es) {_short_list(args.match)}"
        if args.match
        else f"competition(s) {_short_list(args.competition)}"
        if args.competition
        else "every competition"
    )
    if args.dry_run:
        print(f"would enqueue {len(matches)} points message(s) for {what}")
        return EXIT_OK
    queue_url = ctx.settings.queue_url(QueueName.POINTS)
    bar = ProgressBar(f"recompute -> {queue_label(queue_url)}")
    try:
        sent = recompute.enqueue(matches, queue_url, sqs_client=ctx.aws.sqs, progress=bar.update)
    finally:
        bar.finish()
    print(f"enqueued {sent} points message(s) on {QueueName.POINTS.value} for {what}")
    return EXIT_OK


def _short_list(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids[:5]) + (
        f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    )


def _tell_the_app_of_the_rebuild(ctx: Context) -> None:
    """A switch rebuilds both standings objects from match_points and consumes the change
    log, so no later refresh would tell the app of the changes that were waiting: one
    StandingsRefreshed names both views and every competition (SPEC section 6b)."""
    competition_ids, finished_at = ctx.store.rebuilt_standings()
    events = _events(ctx)
    events.publish(
        StandingsRefreshed(
            views=list(REFRESHABLE_VIEWS), competition_ids=competition_ids, finished_at=finished_at
        )
    )
    _say_if_unpublished(events)


def _events(ctx: Context) -> StandingsEvents:
    """The client is built only when there is an event to publish, so that a refresh or a
    switch needs nothing but the database; without AWS settings the event is told as not
    published (_say_if_unpublished)."""
    return StandingsEvents(client_factory=lambda: ctx.aws.events)


def _say_if_unpublished(events: StandingsEvents) -> None:
    """One notice line when the last publish failed; the refresh or switch it tells of
    committed all the same, so the exit status stays 0."""
    if events.last_error is not None:
        notice(f"StandingsRefreshed not published: {describe(events.last_error)}")


def refresh(ctx: Context) -> int:
    scope = RefreshScope(ctx.args.scope)
    if not (ctx.args.wait or ctx.args.full):
        url = ctx.settings.queue_url(QueueName.REFRESH)
        message_id = enqueue_refresh(
            url,
            scope=scope,
            reason=RefreshReason.MANUAL,
            force=ctx.args.force,
            sqs_client=ctx.aws.sqs,
        )
        print(
            f"refresh requested on {QueueName.REFRESH.value}: scope {scope.value}, reason"
            f" manual{', forced' if ctx.args.force else ''}, message id {message_id}"
        )
        return EXIT_OK
    events = _events(ctx)
    started = time.monotonic()
    runs = refresh_now.refresh_now(
        ctx.refresh_store,
        ctx.jobs,
        scope=scope,
        force=ctx.args.force,
        full=ctx.args.full,
        timeout_ms=ctx.args.timeout * 1000,
        events=events,
    )
    print(
        table(
            ("view", "outcome", "took"),
            [
                (
                    run.view_name,
                    _outcome(run.decision),
                    duration(run.duration_ms / 1000 if run.duration_ms is not None else None),
                )
                for run in runs
            ],
        )
    )
    print(f"done in {duration(time.monotonic() - started)}")
    _say_if_unpublished(events)
    return EXIT_OK


def _outcome(decision: ViewDecision) -> str:
    return {
        ViewDecision.EXECUTED: "executed",
        ViewDecision.UNCHANGED: "skipped: nothing changed since its last refresh (--force)",
        ViewDecision.COVERED: "skipped: a refresh started after this request",
    }.get(decision, decision.value)


def console(ctx: Context) -> int:
    from ops.console.data import ConsoleData
    from ops.console.server import ConsoleServer

    server = ConsoleServer(ConsoleData(ctx), port=ctx.args.port)
    print(f"matchstats console: {server.url}", flush=True)
    print("(Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.stop()
    return EXIT_OK
