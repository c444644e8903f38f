"""`make invoke` end to end: sam build, the Lambda Runtime Interface Emulator and the
sample events in events/, against the real PostgreSQL and the local SQS.

The functions run with the repository's own env.json, its local URLs pointed at this
test's database and queues, so the file a developer uses is the one under test. A new
function is one more line in CASES (and its entry in env.json).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.rie import is_running
from devstack.sqs import LocalSqs
from matchstats.db.connection import ConnectionProvider
from matchstats.db.points import PointsStore
from matchstats.messages import parse_refresh_message
from matchstats.models import PointsJob
from testkit.seed import complete_matches, create_season
from tests.conftest import truncate_all
from tests.template_queues import TemplateQueues

ROOT = Path(__file__).resolve().parents[2]
# The first run builds the layer (pip downloads its wheels) before invoking.
INVOKE_TIMEOUT_S = 280
# env.json's stand-ins for the services `make dev` runs.
LOCAL_SQS = "http://127.0.0.1:4566"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    function: str
    event: str  # events/<event>.json
    # Keys the printed response must have, with these values.
    response: dict[str, Any]
    # The reasons of the refresh requests the function leaves on RefreshQueue.
    refreshes: tuple[str, ...] = ()
    # A table and the rows it holds afterwards.
    rows: tuple[str, int] | None = None
    # Whether the points of matches 1 and 2 are computed first, as they are before any
    # refresh request that has something to refresh.
    points_first: bool = False


NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}
CASES = [
    Case(
        "CalculatePointsFunction", "calculate-points", NO_FAILURES, ("points",), ("match_points", 4)
    ),
    # Its points request predates the migrations' build of the views, which covers it;
    # its scheduled request for competitor_stats finds the logged changes and refreshes.
    Case(
        "RefreshViewsFunction",
        "refresh-views",
        NO_FAILURES,
        (),
        ("refresh_log", 1),
        points_first=True,
    ),
    Case("ScheduledRefreshFunction", "scheduled-refresh", {"status": "enqueued"}, ("schedule",)),
    # What `sam local generate-event cloudwatch scheduled-event` prints, and what
    # `sam local invoke` sends without an event.
    Case(
        "ScheduledRefreshFunction",
        "scheduled-refresh-sam-generated",
        {"status": "enqueued"},
        ("schedule",),
    ),
    Case(
        "ScheduledRefreshFunction", "scheduled-refresh-empty", {"status": "enqueued"}, ("schedule",)
    ),
    Case("RefreshApiFunction", "refresh-api", {"statusCode": 202}, ("api",)),
]


@dataclass(frozen=True)
class Invocation:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def response(self) -> Any:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"nothing on stdout; stderr:\n{self.stderr}"
        return json.loads(lines[-1])

    @property
    def pids(self) -> list[int]:
        """The emulator's and its runtime's, as the command reports stopping them."""
        return [
            int(pid)
            for line in re.findall(r"^invoke: emulator pid .* stopped$", self.stderr, re.M)
            for pid in re.findall(r"pid (\d+)", line)
        ]


def make_invoke(*variables: str) -> Invocation:
    # The make running this test (make test) passes down flags and a jobserver the
    # inner make must not inherit.
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    }
    result = subprocess.run(  # noqa: S603 (our own make target)
        ["make", "--no-print-directory", "invoke", *variables],  # noqa: S607 (make on PATH)
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT_S,
        check=False,
    )
    return Invocation(result.returncode, result.stdout, result.stderr)


def local_env_file(stack: TemplateQueues, database_url: str, endpoint_url: str) -> dict[str, Any]:
    """The repository's env.json with its local URLs replaced by this test's services."""

    def pointed_here(name: str, value: str) -> str:
        if name == "DATABASE_URL":
            return database_url
        if value == LOCAL_SQS:
            return endpoint_url
        if value.startswith(LOCAL_SQS + "/"):
            return stack.urls[value.rsplit("/", 1)[-1]]
        return value

    document = json.loads((ROOT / "env.json").read_text())
    return {
        section: {name: pointed_here(name, value) for name, value in variables.items()}
        for section, variables in document.items()
    }


@pytest.fixture(scope="module")
def local_sqs() -> Iterator[LocalSqs]:
    with LocalSqs() as sqs:
        yield sqs


@pytest.fixture
def stack(local_sqs: LocalSqs, db: psycopg.Connection) -> TemplateQueues:
    """Empty tables and fresh queues for each invocation."""
    truncate_all(db)
    return TemplateQueues.fresh_queues(local_sqs.client())


@pytest.fixture
def env_file(stack: TemplateQueues, database_url: str, local_sqs: LocalSqs, tmp_path: Path) -> Path:
    path = tmp_path / "env.json"
    path.write_text(json.dumps(local_env_file(stack, database_url, local_sqs.endpoint_url)))
    return path


def test_every_sample_event_has_a_case() -> None:
    # Given the sample events in events/, When comparing them with the cases below,
    # Then each is run through make invoke
    assert sorted(path.stem for path in (ROOT / "events").glob("*.json")) == sorted(
        case.event for case in CASES
    )


@pytest.mark.parametrize("case", CASES, ids=[case.event for case in CASES])
def test_make_invoke_runs_the_sample_event_through_the_built_function(
    case: Case, stack: TemplateQueues, env_file: Path, db: psycopg.Connection, database_url: str
) -> None:
    # Given matches 1 and 2 completed, as events/calculate-points.json expects
    season = create_season(db, competitions=1, competitors_per_competition=4)
    assert season.match_ids[:2] == [1, 2]
    complete_matches(db, [1, 2], random.Random(7))
    if case.points_first:
        PointsStore(ConnectionProvider(lambda: database_url)).write_batch(
            [PointsJob(job_id=f"given-{m}", match_id=m, attempts=1) for m in (1, 2)],
            started_at=datetime.now(UTC),
            statement_timeout_ms=10_000,
            lock_timeout_ms=5_000,
        )

    # When the function is invoked with its sample event
    invocation = make_invoke(
        f"FN={case.function}", f"EVENT=events/{case.event}.json", f"ENV_VARS={env_file}"
    )

    # Then it succeeds and prints the function's response ...
    assert invocation.exit_code == 0, invocation.stderr
    assert case.response.items() <= invocation.response.items(), invocation.stdout
    # ...with the emulator's START, END and REPORT lines around the function's logs
    for marker in ("START RequestId: ", "END RequestId: ", "REPORT RequestId: "):
        assert re.search(f"^{marker}", invocation.stderr, re.M), invocation.stderr
    # ...the rows it writes and the refresh it requests
    if case.rows is not None:
        table, expected = case.rows
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (expected,)
    refreshes = receive_all(stack, "RefreshQueue")
    assert tuple(parse_refresh_message(m["Body"]).reason for m in refreshes) == case.refreshes
    # ...and neither the emulator nor its runtime is left running
    assert len(invocation.pids) >= 2, invocation.stderr
    assert [pid for pid in invocation.pids if is_running(pid)] == []


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        (["FN=NoSuchFunction", "EVENT=events/calculate-points.json"], "unknown function"),
        (["EVENT=events/calculate-points.json"], "no function given"),
        (["FN=CalculatePointsFunction", "EVENT=events/no-such-event.json"], "cannot read event"),
    ],
    ids=["unknown function", "no function", "missing event"],
)
def test_make_invoke_names_the_problem_when_the_function_or_event_is_wrong(
    variables: list[str], problem: str
) -> None:
    # Given a function or an event the repository does not have
    # When make invoke is asked for it
    invocation = make_invoke(*variables)

    # Then it fails on one line that names the problem and lists what there is
    assert invocation.exit_code != 0
    (message,) = [line for line in invocation.stderr.splitlines() if line.startswith("invoke:")]
    assert problem in message
    assert "CalculatePointsFunction" in message or "events/calculate-points.json" in message
    # ...without starting an emulator
    assert "emulator pid" not in invocation.stderr


def receive_all(stack: TemplateQueues, queue: str) -> list[dict[str, Any]]:
    """Every message on `queue`, delayed ones included (a refresh waits a second)."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = stack.sqs.receive_message(
            QueueUrl=stack.urls[queue], MaxNumberOfMessages=10, WaitTimeSeconds=2
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        stack.delete(queue, batch)
