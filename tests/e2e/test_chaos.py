"""Chaos, end to end through the local stack: nothing is lost, nothing is counted twice.

The whole bundle runs from template.yaml (DevStack): a real PostgreSQL, moto's SQS with
the template's queues (PointsQueue: visibility 720 s, dead-lettered on the 3rd receive),
CalculatePointsFunction under the local event source mapping (batch 10, concurrency 5),
RefreshViewsFunction under its own. Playing the application:

- 2,000 matches complete, and every points message is sent 3 times, shuffled;
- 5% of all messages are poison: bad JSON, a missing matchId, an unknown match, a
  match completed without scores;
- 50 results are corrected and 20 matches voided while the first messages are processed,
  each change with its own 3 messages;
- in the middle of the run the database is stopped for 10 s, then started again.

After the queues are quiet, the operator redrives the points dead-letter queue once with
`matchstats dlq redrive points` (in process). It moves every message there: the ones SQS
dead-lettered after 3 failed receives during the outage (transient, no reason attached)
and the poison, which the function dead-letters again with its reason. That is what an
operator's redrive does, and it shows a poison message round-trips without harm; the
poison is counted once, by its chaos id. Then:

- match_points and both standings (views or tables) equal an independent recomputation;
- every poison message is in the points dead-letter queue, once, with its reason;
- no valid message is in any dead-letter queue, and every one was processed.

The figures (sent, processed, retried, dead-lettered by reason, redriven, lost,
double-counted) are printed, and at the end of the run. CHAOS_SCALE=N multiplies the
matches (CHAOS_SCALE=5: 10,000 completions); CHAOS_OUTAGE_S changes the outage. With the
5 s and 10 s backoff, a message needs 15 s of failures to reach its 3rd failed receive,
so the default 10 s outage dead-letters no valid message; CHAOS_OUTAGE_S=20 does.

A second, small run (200 completions, no outage; issue 10, item 4) routes every
function through a real PgBouncer in transaction mode with DB_POOLER=transaction: the
same assertions, with server connections shared between the functions' transactions.
It is skipped, saying how to install PgBouncer, where PgBouncer is absent.

A third run (issue 12, point 3) is the full one with the standings in incremental mode:
tables that RefreshViewsFunction keeps current key by key from the change log, switched
to by the operator's own path once the stack is up. The same assertions hold.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import replace

import psycopg
import pytest

from devstack.esm import EventSourceMapping
from devstack.stack import DevStack, StackOptions
from matchstats.models import StandingsMode
from ops import dlq
from ops.aws import Aws
from ops.cli import main as matchstats_cli
from ops.sqs import OpsQueues
from tests.chaos_support import (
    EXPECTED_ERROR,
    ChaosFigures,
    DeliveryLog,
    drain_dead_letters,
    report_at_end,
    send_all,
)
from tests.conftest import switch_standings_mode
from tests.e2e.chaos_season import Outcome, Scenario, correct_and_void, prepare
from tests.waiting import wait_for

# The outage starts once this share of all messages has been processed.
OUTAGE_AT = 0.4
SEED = 20261128
TRANSIENT = "transient (SQS, after 3 receives)"


FULL = Scenario(
    scale=float(os.environ.get("CHAOS_SCALE", "1")),
    outage_s=float(os.environ.get("CHAOS_OUTAGE_S", "10")),
)
# Issue 10, item 4: a small run with every function behind a real PgBouncer 1.18 in
# transaction mode, where server connections are shared between transactions. No
# outage: behind PgBouncer even a 0.3 s restart means 15 s of refused transactions
# (its server_login_retry), which takes the run past a minute and shows PgBouncer's
# policy rather than the bundle's.
BEHIND_PGBOUNCER = Scenario(scale=0.1, outage_s=None, db_pooler="transaction")
# Issue 12, point 3: the full run with the standings maintained incrementally.
INCREMENTAL = replace(FULL, standings=StandingsMode.INCREMENTAL)

pytestmark = pytest.mark.slow


def recording_mapping(stack: DevStack, log: DeliveryLog) -> EventSourceMapping:
    """The stack's PointsQueue mapping, as template.yaml configures it, calling the same
    function through the delivery log."""
    own = stack.mappings["CalculatePointsFunction"]
    own.stop()
    assert own.queue_arn is not None
    return EventSourceMapping(
        stack.sqs,
        own.queue_url,
        own.queue_arn,
        log,
        batch_size=own.batch_size,
        batching_window_s=own.batching_window_s,
        maximum_concurrency=own.maximum_concurrency,
        function_name=own.function_name,
        timeout_s=own.timeout_s,
        report_batch_item_failures=own.report_batch_item_failures,
        memory_limit_in_mb=own.memory_limit_in_mb,
    )


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(FULL, id="direct", marks=pytest.mark.timeout(FULL.timeout_s)),
        pytest.param(
            BEHIND_PGBOUNCER,
            id="pgbouncer",
            marks=pytest.mark.timeout(BEHIND_PGBOUNCER.timeout_s),
        ),
        pytest.param(
            INCREMENTAL, id="incremental", marks=pytest.mark.timeout(INCREMENTAL.timeout_s)
        ),
    ],
)
def test_nothing_is_lost_and_nothing_counted_twice_under_chaos(
    request: pytest.FixtureRequest, scenario: Scenario
) -> None:
    if scenario.db_pooler != "none":
        request.getfixturevalue("pgbouncer_path")  # skipped, with the reason, without one
    started = time.monotonic()
    rng = random.Random(SEED)
    figures = ChaosFigures(
        completions=scenario.completions,
        corrections=scenario.corrections,
        voids=scenario.voids,
        db_pooler=scenario.db_pooler,
    )
    options = StackOptions(schedule_interval_s=3600, db_pooler=scenario.db_pooler)
    with DevStack(options) as stack:
        if stack.postgres is None:
            pytest.skip("DATABASE_URL names a server this test may not stop")
        if scenario.standings is not StandingsMode.MATERIALIZED_VIEW:
            switch_standings_mode(stack.database_url, scenario.standings)
        figures.seconds["stack up"] = time.monotonic() - started
        urls = stack.queue_urls
        log = DeliveryLog(stack.functions["CalculatePointsFunction"])
        with recording_mapping(stack, log) as mapping:
            # Given a season whose matches complete, and the first third of its
            # messages (each sent 3 times, shuffled, 5% poison) on PointsQueue
            with psycopg.connect(stack.database_url, autocommit=True) as db:
                plan = prepare(db, rng, scenario)
                cut = len(plan.first_phase) // 3
                send_all(stack.sqs, urls["PointsQueue"], plan.first_phase[:cut])
                # ...then corrections and voids, whose messages join the rest, shuffled
                rest = plan.first_phase[cut:] + correct_and_void(db, plan, rng, scenario)
            rng.shuffle(rest)
            sent = plan.first_phase[:cut] + rest
            sender = threading.Thread(
                target=send_all, args=(stack.sqs, urls["PointsQueue"], rest), name="app"
            )
            sender.start()

            # When the database stops for 10 s in the middle of the run
            if scenario.outage_s is not None:
                wait_for(
                    lambda: log.records_completed >= OUTAGE_AT * len(sent),
                    scenario.quiet_timeout_s,
                    "the run to reach its middle",
                    interval_s=0.1,
                )
                figures.seconds["to the outage"] = time.monotonic() - started
                outage_started = time.monotonic()
                assert stack.postgres is not None
                stack.postgres.stop_server()
                time.sleep(scenario.outage_s)
                stack.postgres.start_server()
                figures.outage_s = time.monotonic() - outage_started
            sender.join()
            # ...and, once every queue is quiet, the operator redrives the points DLQ once
            stack.wait_until_idle(scenario.quiet_timeout_s, stable_s=2)
            figures.seconds["quiet"] = time.monotonic() - started
            ops_queues = OpsQueues(stack.sqs)
            before = dlq.show(ops_queues, urls["PointsDeadLetterQueue"], limit=100_000)
            figures.dead_lettered = Counter(
                message.error_kind or TRANSIENT for message in before.messages
            )
            figures.refresh_dead_lettered = ops_queues.depth(urls["RefreshDeadLetterQueue"]).visible
            environ = {
                "POINTS_QUEUE_URL": urls["PointsQueue"],
                "POINTS_DEAD_LETTER_QUEUE_URL": urls["PointsDeadLetterQueue"],
                "REFRESH_QUEUE_URL": urls["RefreshQueue"],
                "REFRESH_DEAD_LETTER_QUEUE_URL": urls["RefreshDeadLetterQueue"],
            }
            aws = Aws(sqs=stack.sqs)
            # moto runs no message move tasks: `auto` would probe for one (moto logs the
            # NotImplementedError) and then copy, as `copy` does at once.
            redrive = ["dlq", "redrive", "--method", "copy"]
            assert matchstats_cli([*redrive, "points"], aws=aws, environ=environ) == 0
            if figures.refresh_dead_lettered:
                assert matchstats_cli([*redrive, "refresh"], aws=aws, environ=environ) == 0
            figures.redriven = len(before.messages)
            figures.redriven_transient = figures.dead_lettered[TRANSIENT]
            stack.wait_until_idle(scenario.quiet_timeout_s, stable_s=2)
            figures.seconds["redriven and quiet"] = time.monotonic() - started
            assert mapping.stats.handler_errors == log.function_errors

        # Then: what is in the dead-letter queues
        points_dlq = drain_dead_letters(stack.sqs, urls["PointsDeadLetterQueue"])
        refresh_dlq = drain_dead_letters(stack.sqs, urls["RefreshDeadLetterQueue"])
        with psycopg.connect(stack.database_url, autocommit=True) as db:
            outcome = Outcome.read(db)
            mode = db.execute("SELECT mode FROM standings_mode").fetchone()

    # ...every poison message, once, with its reason; no valid message in any DLQ
    by_id = {message.chaos_id: message for message in sent}
    poison_ids = {m.chaos_id for m in sent if m.poison}
    valid_ids = {m.chaos_id for m in sent if not m.poison}
    dead_ids = Counter(letter.chaos_id for letter in points_dlq)
    wrong_reason = [
        letter
        for letter in points_dlq
        if letter.chaos_id in poison_ids
        and (
            letter.error_kind != EXPECTED_ERROR[by_id[letter.chaos_id].kind][0]
            or EXPECTED_ERROR[by_id[letter.chaos_id].kind][1] not in (letter.reason or "")
        )
    ]
    valid_dead = [letter for letter in points_dlq + refresh_dlq if letter.chaos_id in valid_ids]
    unknown_dead = [letter for letter in points_dlq if letter.chaos_id not in by_id]
    # ...every valid message processed, and the database as the match rows imply
    completed_valid = {i for i in valid_ids if log.completed[i]}
    lost_messages = valid_ids - completed_valid - {letter.chaos_id for letter in valid_dead}
    figures.sent = len(sent)
    figures.sent_valid = len(valid_ids)
    figures.sent_poison = Counter(str(m.kind) for m in sent if m.poison)
    figures.processed = len(completed_valid)
    figures.processed_again = sum(1 for i in valid_ids if log.completed[i] > 1)
    figures.retried = sum(log.failures.values())
    figures.lost = len(lost_messages) + len(outcome.lost_matches)
    figures.double_counted = outcome.double_counted
    figures.match_points_rows = len(outcome.actual)
    figures.points_total = outcome.points_total
    figures.seconds["total"] = time.monotonic() - started
    title = f"chaos figures (tests/e2e/test_chaos.py, {request.node.callspec.id})"
    report_at_end(request.config, title, figures.render())

    assert figures.sent_valid == plan.valid_total
    assert dict(dead_ids) == dict.fromkeys(poison_ids, 1), "poison not in the DLQ once each"
    assert wrong_reason == []
    assert valid_dead == []
    assert unknown_dead == []
    assert refresh_dlq == []
    assert lost_messages == set()
    assert outcome.lost_matches == set()
    assert figures.lost == 0
    assert figures.double_counted == 0
    if scenario.outage_s is None:
        # Nothing went wrong but the poison, so no valid record may fail even once.
        assert figures.retried == 0, f"{figures.retried} record failures without an outage"
    assert mode == (scenario.standings.value,)
    assert outcome.actual == outcome.expected
    assert outcome.standings_equal
    assert outcome.stats_equal
    assert log.function_errors == 0
