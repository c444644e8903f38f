"""The `matchstats` command line: its commands, arguments and help text, one parser
that ops.cli.main runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from matchstats.messages import RefreshScope
from matchstats.models import StandingsMode
from ops import commands, dlq, dlq_commands
from ops.commands import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ops.redrive import REDRIVE_HOLD_S, RedriveMethod
from ops.render import printable
from ops.settings import DEAD_LETTER_PAIRS

MAX_ID = 2**63 - 1

EPILOG = f"""\
configuration (explicit environment variables win over --stack):
  DATABASE_URL or DB_SECRET_ARN      the database (--stack supplies DB_SECRET_ARN from
                                     the stack's DbSecretArn parameter)
  POINTS_QUEUE_URL, REFRESH_QUEUE_URL, POINTS_DEAD_LETTER_QUEUE_URL,
  REFRESH_DEAD_LETTER_QUEUE_URL      the queues (--stack reads them from the outputs
                                     PointsQueueUrl, RefreshQueueUrl, ...)
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL
                                     the usual boto3 settings; AWS_ENDPOINT_URL points
                                     at a local stack
  MATCHSTATS_DEBUG=1                 print the traceback of an unexpected error, and
                                     the functions' own log lines (on stderr)

exit status:
  {EXIT_OK}    the command did what it says
  {EXIT_FAILED}    it failed: an unreachable database or endpoint, unknown ids, missing
       configuration, a queue that refused messages (the message says which)
  {EXIT_USAGE}    usage error: an unknown command, option or queue name, a bad id
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); nothing is lost, see `dlq redrive --help`
"""

DLQ_SHOW_HELP = """\
Lists dead-lettered messages with the reason a consumer attached
(matchstats.errorKind, matchstats.reason) and their receive counts, without
consuming them.

SQS cannot peek: a message is read by receiving it, which hides it and adds one
to its receive count. Every message read is made visible again before the
command returns (if the command dies, it reappears within 30 s). So "receives"
also counts earlier looks; "source receives" is how often the source queue had
delivered it before a consumer dead-lettered it. A message without a reason was
moved by SQS itself after 3 failed receives (transient failures: see
`matchstats jobs --failed`)."""

DLQ_REDRIVE_HELP = """\
Moves dead-lettered messages back to the queue they came from (points ->
PointsQueue, refresh -> RefreshQueue), with a progress bar on stderr.

Where the endpoint runs SQS message move tasks (AWS), StartMessageMoveTask moves
them server side and the command follows its progress; Ctrl-C stops following,
not the task. Elsewhere (moto, the local stack), or with --limit, or with
--method copy, the command moves them itself: it receives up to 10, sends their
copies with SendMessageBatch (as many requests as SQS's 1 MiB a request needs),
and deletes from the dead-letter queue only the ones the send confirmed
(DeleteMessageBatch). The matchstats.* reason attributes
are not sent back (a move task keeps them; the consumers ignore them).

Nothing is ever lost. Delivery is at-least-once: an interruption between a send
and its delete may leave a copy in both queues, and the next redrive sends it
again. The consumers tolerate duplicates: points are recomputed from the match's
current row (idempotent), and refresh requests coalesce. Ctrl-C settles the chunk
in hand and reports what was moved; run the command again to move the rest."""

DLQ_DISCARD_HELP = """\
Deletes dead-lettered messages for good: a poison message that no redrive can
repair (a match that will never exist, a body that is not a points message).
Without --kind or --id it takes every message in the queue.

It lists what it would delete, by error kind, and asks before deleting unless
--yes is given; without a terminal to ask at, it refuses. Only the messages it
listed are deleted: one dead-lettered meanwhile waits for the next look."""

JOBS_HELP = """\
The job history (table job_history), newest first: one row per run of a points
message or a refresh request. "outcome" says what became of it: for a refresh
request executed (a refresh ran for it), covered (skipped: a refresh started after
the request) or unchanged (skipped: nothing changed since the last refresh); for a
failed run "retry N of 3 at ..." while its message waits out its backoff (5 s,
then 10 s), or dead-lettered."""

JOB_SHOW_HELP = """\
One job's detail: its message body, the error kind and reason of a failure, the
refresh decision for each view, and every attempt (each delivery of a retried
message is a run of its own). ID is a job_history id (the first column of
`matchstats jobs`) or the message id the job ran for; the dead-letter copy of a
failed message carries that id as matchstats.sourceMessageId, and `matchstats dlq
show` lists it as "job (source message id)". For a dead-lettered job it also looks
the copy up in the dead-letter queue (a read that SQS counts as a receive)."""

CONSOLE_HELP = """\
Serves the operations console on 127.0.0.1 and prints its URL, which carries a
login token: the queues (visible, in flight, delayed, oldest), each view's
refreshes (executed, covered, unchanged), duration and freshness, the standings,
the job history with filters and each job's detail, and the dead-letter queues
grouped by error kind, with redrive and discard (each confirmed first) and a
forced refresh. It reads the same sources as status, jobs and dlq: the running
`make dev` stack, the environment, or --stack NAME. Ctrl-C stops it."""

RECOMPUTE_HELP = """\
Sends points messages to PointsQueue (SendMessageBatch, 10 a call) for a
backfill or after a rules change, with a progress bar and a count.

--match sends one per named match (each must exist). --competition and --all
select every completed match and every match that still has match_points rows,
since a voided or reopened match must lose its points; any other match has no
points either way. Recomputing is idempotent, so running it twice is harmless."""

REFRESH_HELP = """\
Asks RefreshViewsFunction for a refresh of competition_standings and
competitor_stats (materialized views, or tables in incremental mode; reason
manual), or with --wait refreshes them in this process with the function's own
logic and prints how long each took, or why it was skipped (nothing changed
since the last refresh; --force refreshes anyway). --full rebuilds both from
match_points in this process, in either standings mode: every key, not only the
logged ones (implies --wait and --force). A refresh run here that changed rows
then publishes StandingsRefreshed; it needs only the database: without AWS
settings, one line says that the event was not published, and why."""

MIGRATE_HELP = """\
Applies the migrations that are missing, each once, in its own transaction (safe to
run twice, and from two places at once). With --standings, then switches how
competition_standings and competitor_stats are maintained: materialized-view (the
default: REFRESH MATERIALIZED VIEW CONCURRENTLY of the whole view) or incremental
(tables whose changed keys alone are recomputed: the cost of what changed). The
switch rebuilds both from match_points in one transaction; readers keep reading
the old ones until the final rename, and no row is lost."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        # The message may quote what was typed: escaped, as ops.commands.error does.
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n"
        )


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _positive_id(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(f"must be a positive id, got {text}")
    return value


def _limit(maximum: int) -> Callable[[str], int]:
    """A count or a number of seconds from 1 to `maximum`; argparse names the option."""

    def parse(text: str) -> int:
        value = _whole_number(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum}, got {value}")
        return value

    return parse


def _selection_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--kind",
        metavar="KIND",
        help=f"{verb} only messages of this error kind (as `dlq show` lists them, e.g."
        f" missing_scores; {dlq.RETRIES_EXHAUSTED} for those SQS moved after 3 receives)",
    )
    parser.add_argument(
        "--id",
        metavar="ID",
        help=f"{verb} only this message: its dead-letter message id, or its source message"
        " id (the job id)",
    )


def build_parser() -> argparse.ArgumentParser:
    # Accepted before or after the command; SUPPRESS lets the two places not overwrite.
    common = _Parser(add_help=False)
    common.add_argument(
        "--stack",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="read the queue URLs (and the database secret) from this CloudFormation stack",
    )
    common.add_argument(
        "--profile", default=argparse.SUPPRESS, help="AWS profile (default: AWS_PROFILE)"
    )
    common.add_argument(
        "--region", default=argparse.SUPPRESS, help="AWS region (default: AWS_REGION)"
    )
    formatter = argparse.RawDescriptionHelpFormatter

    parser = _Parser(
        prog="matchstats",
        description="Status, dead letters and repairs of the matchstats pipeline.",
        epilog=EPILOG,
        formatter_class=formatter,
        parents=[common],
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str,
        help_text: str,
        description: str | None = None,
        group: argparse._SubParsersAction[_Parser] = subcommands,
    ) -> _Parser:
        """A command (or, in `group`, an action of one) with the common options."""
        sub: _Parser = group.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            epilog=EPILOG,
            formatter_class=formatter,
            parents=[common],
        )
        return sub

    migrate = command("migrate", "apply the database migrations (idempotent)", MIGRATE_HELP)
    migrate.add_argument(
        "--standings",
        choices=[mode.value for mode in StandingsMode],
        help="then maintain the standings this way (switches both ways, losing nothing)",
    )
    migrate.set_defaults(run=commands.migrate)
    command("status", "queue depths, view freshness and the latest job failures").set_defaults(
        run=commands.show_status
    )

    jobs = command("jobs", "the job history (table job_history), newest first", JOBS_HELP)
    jobs.add_argument("--failed", action="store_true", help="only failed runs")
    jobs.add_argument("--type", choices=("points", "refresh"), help="only this job type")
    jobs.add_argument("--subject", metavar="TEXT", help="only subjects containing TEXT")
    jobs.add_argument("--limit", type=_limit(1000), default=20, metavar="N", help="default 20")
    jobs.set_defaults(run=commands.jobs)
    job_actions = jobs.add_subparsers(dest="action", metavar="ACTION")
    job_show = command(
        "show",
        "one job's detail: body, error kind and reason, every attempt",
        JOB_SHOW_HELP,
        group=job_actions,
    )
    job_show.add_argument("id", help="a job_history id, or the message id the job ran for")
    job_show.set_defaults(run=commands.job_show)

    dead_letters = command("dlq", "dead-letter queues: show, redrive, discard")
    actions = dead_letters.add_subparsers(dest="action", metavar="ACTION", required=True)

    def dlq_action(name: str, help_text: str, description: str) -> _Parser:
        """An action of `matchstats dlq`, on the dead-letter queue it names first."""
        action = command(name, help_text, description, group=actions)
        action.add_argument(
            "queue", choices=tuple(DEAD_LETTER_PAIRS), help="which dead-letter queue"
        )
        return action

    show = dlq_action(
        "show",
        "list dead-lettered messages and their reasons, without consuming them",
        DLQ_SHOW_HELP,
    )
    show.add_argument("--limit", type=_limit(1000), default=10, metavar="N", help="default 10")
    show.set_defaults(run=dlq_commands.dlq_show)
    redrive = dlq_action(
        "redrive",
        "move dead-lettered messages back to their source queue",
        DLQ_REDRIVE_HELP,
    )
    redrive.add_argument(
        "--limit", type=_limit(MAX_ID), metavar="N", help="move at most N (default: all)"
    )
    redrive.add_argument(
        "--method",
        choices=[method.value for method in RedriveMethod],
        default=RedriveMethod.AUTO.value,
        help="auto (default): a move task where the endpoint supports it and no --limit, else copy",
    )
    redrive.add_argument(
        "--hold",
        type=_limit(43_200),
        default=REDRIVE_HOLD_S,
        metavar="SECONDS",
        help="how long a message being copied stays hidden in the dead-letter queue if the"
        f" command dies before deleting it (default {REDRIVE_HOLD_S})",
    )
    _selection_arguments(redrive, "move")
    redrive.set_defaults(run=dlq_commands.dlq_redrive)
    discard = dlq_action(
        "discard",
        "delete dead-lettered messages for good (asks first unless --yes)",
        DLQ_DISCARD_HELP,
    )
    _selection_arguments(discard, "discard")
    discard.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    discard.set_defaults(run=dlq_commands.dlq_discard)

    points = command("recompute", "enqueue points messages for matches", RECOMPUTE_HELP)
    scope = points.add_mutually_exclusive_group(required=True)
    scope.add_argument("--match", type=_positive_id, nargs="+", metavar="ID")
    scope.add_argument("--competition", type=_positive_id, nargs="+", metavar="ID")
    scope.add_argument("--all", action="store_true", help="every competition")
    points.add_argument("--dry-run", action="store_true", help="count the matches, send nothing")
    points.set_defaults(run=commands.recompute_points)

    console = command("console", "the operations web page, on 127.0.0.1", CONSOLE_HELP)
    console.add_argument(
        "--port", type=_limit(65535), default=0, metavar="N", help="default: a free port"
    )
    console.set_defaults(run=commands.console)

    views = command("refresh", "refresh the standings and competitor stats", REFRESH_HELP)
    views.add_argument(
        "--scope", choices=[s.value for s in RefreshScope], default=RefreshScope.ALL.value
    )
    views.add_argument("--force", action="store_true", help="even if nothing changed")
    views.add_argument(
        "--full", action="store_true", help="rebuild every key from match_points (implies --wait)"
    )
    views.add_argument(
        "--wait", action="store_true", help="refresh in this process and report the outcome"
    )
    views.add_argument(
        "--timeout",
        type=_limit(3600),
        default=600,
        metavar="SECONDS",
        help="with --wait: statement timeout of each refresh (default 600)",
    )
    views.set_defaults(run=commands.refresh)
    return parser
