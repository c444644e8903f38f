"""`make dev` as a new user meets it (issue 13): a seeded season whose first message
succeeds, one export block that `matchstats` and `make invoke` pick up by themselves
while the stack runs (and not once it is gone), a line per invocation, fresh logs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from devstack import devenv

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120
pytestmark = pytest.mark.slow


@dataclass
class DevProcess:
    process: subprocess.Popen[str]
    env_file: Path
    log_dir: Path
    output: Path

    def text(self) -> str:
        return self.output.read_text()

    def wait_for(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text(), re.M)
            if found:
                return found
            assert self.process.poll() is None, self.text()
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not printed:\n{self.text()}")


def clean_environment(**extra: str) -> dict[str, str]:
    """A new user's shell: no AWS settings, no database, no queue URLs."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, **extra}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    folder = tmp_path_factory.mktemp("dev")
    env_file, log_dir, output = folder / "dev.env", folder / "logs", folder / "out.txt"
    # Given logs left by an earlier run
    log_dir.mkdir()
    (log_dir / "CalculatePointsFunction.log").write_text("a line from an earlier run\n")
    with output.open("w") as out:
        process = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "devstack.dev", "--log-dir", str(log_dir)],
            cwd=ROOT,
            env=clean_environment(**{devenv.ENV_FILE_VARIABLE: str(env_file)}),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = DevProcess(process, env_file, log_dir, output)
    try:
        running.wait_for("^Invocations as they happen:", START_TIMEOUT_S)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def run(*argv: str, env_file: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own tools
        list(argv),
        cwd=ROOT,
        env=clean_environment(**{devenv.ENV_FILE_VARIABLE: str(env_file)}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def job_status(database_url: str, match_id: int) -> list[tuple[str, str | None]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, error FROM job_history WHERE subject = %s ORDER BY id",
            (f"match {match_id}",),
        ).fetchall()
    return [(str(status), error) for status, error in rows]


def wait_for_job(database_url: str, match_id: int, runs: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(job_status(database_url, match_id)) < runs:
        assert time.monotonic() < deadline, f"match {match_id}: no job run after {timeout_s} s"
        time.sleep(0.3)


def test_the_first_message_a_new_user_sends_finds_its_match(dev: DevProcess) -> None:
    # Given make dev's seeded season (item 1)
    variables = devenv.parse(dev.env_file)
    assert variables is not None
    database_url = variables.variables["DATABASE_URL"]
    producer = dev.wait_for(r"^  (\(\. .* print\(e\(1\)\)'\))$").group(1)
    wait_for_job(database_url, 1, runs=1)

    # When the user runs the producer line make dev printed, as printed
    sent = subprocess.run(  # noqa: S603 - the printed line, in a shell as a user would
        ["bash", "-c", producer],  # noqa: S607
        cwd=ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then the message is processed like the app's: completed, not dead-lettered
    assert sent.returncode == 0, sent.stderr
    wait_for_job(database_url, 1, runs=2)
    assert job_status(database_url, 1) == [("completed", None), ("completed", None)]
    # ...and the season's standings exist
    with psycopg.connect(database_url) as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM competition_table").fetchone() == (0,):
            assert time.monotonic() < deadline, "no standings"
            time.sleep(0.5)


def test_one_export_block_is_printed_and_written_for_the_tools(dev: DevProcess) -> None:
    # Given the block make dev printed and the file it wrote (item 2)
    printed = re.findall(r"^export \w+=.*$", dev.text(), re.M)
    written = devenv.parse(dev.env_file)

    # Then they hold the same variables: database, endpoint, the four queues, the secret
    assert written is not None
    assert printed == written.export_block().splitlines()
    for name in (
        "DATABASE_URL",
        "AWS_ENDPOINT_URL",
        "POINTS_QUEUE_URL",
        "REFRESH_QUEUE_URL",
        "POINTS_DEAD_LETTER_QUEUE_URL",
        "REFRESH_DEAD_LETTER_QUEUE_URL",
        "CRON_SECRET",
    ):
        assert written.variables.get(name), name
    assert written.pid == dev.process.pid
    assert dev.env_file.stat().st_mode & 0o077 == 0


def test_matchstats_and_make_invoke_pick_the_stack_up_by_themselves(dev: DevProcess) -> None:
    # Given a shell with no setting at all (item 2), and the season processed
    dev.wait_for(r"RefreshViewsFunction .* views refreshed")

    # When the user asks for the status, and invokes the sample points event
    status = run(str(ROOT / ".venv" / "bin" / "matchstats"), "status", env_file=dev.env_file)
    invoked = run(
        "make",
        "--no-print-directory",
        "invoke",
        "FN=CalculatePointsFunction",
        "EVENT=events/calculate-points.json",
        env_file=dev.env_file,
        timeout=280,
    )

    # Then status reads the local stack's queues and views
    assert status.returncode == 0, status.stderr
    assert "PointsDeadLetterQueue" in status.stdout
    assert "competition_standings" in status.stdout
    # ...and the sample event's matches 1 and 2 exist: no batch item failure, exit 0
    assert invoked.returncode == 0, invoked.stderr[-3000:]
    assert "using the running `make dev` stack" in invoked.stderr
    assert '"batchItemFailures": []' in invoked.stdout


def test_each_invocation_is_one_line_and_the_logs_start_afresh(dev: DevProcess) -> None:
    # Given the season make dev sent through the pipeline at start (item 7)
    line = dev.wait_for(
        r"^\d\d:\d\d:\d\d  CalculatePointsFunction +10 records  10 completed  \(\d+ ms\)$"
    )

    # Then the bad-data match was reported as dead-lettered on its invocation's line (in
    # whichever batch the event source mapping put it: alone, or with others completed)
    dev.wait_for(
        r"CalculatePointsFunction +\d+ records? +(\d+ completed, )?1 dead-lettered  \(\d+ ms\)$"
    )
    assert line
    # ...and the earlier run's log lines are gone, this run's are there
    log = (dev.log_dir / "CalculatePointsFunction.log").read_text()
    assert "a line from an earlier run" not in log
    assert '"service":"matchstats"' in log
    # ...the functions' JSON log lines are in their file, and none reached the terminal
    assert log_lines(log), log[:2000]
    assert log_lines(dev.text()) == []


def log_lines(text: str) -> list[str]:
    """The lines of `text` that are Powertools log records: JSON objects with a level."""
    found = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "level" in record:
            found.append(line)
    return found


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-the-secret"],
    ids=["missing", "another-scheme", "empty-bearer", "wrong-secret"],
)
def test_a_refused_api_call_is_summed_up_as_what_it_is(
    dev: DevProcess, authorization: str | None
) -> None:
    # Given the API URL make dev printed
    api = dev.wait_for(r"curl -i -X POST (http://\S+/cron/update-stats)").group(1)
    before = len(re.findall(REFUSED_LINE, dev.text(), re.M))

    # When a caller posts without the secret, with another scheme, or with a wrong one
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(api, data=b'{"scope": "all"}', headers=headers)  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 - the local stack's URL

    # Then the API answers 401, and the line for it says a bearer secret was missing or wrong
    assert refused.value.code == 401
    deadline = time.monotonic() + 30
    while len(re.findall(REFUSED_LINE, dev.text(), re.M)) == before:
        assert time.monotonic() < deadline, dev.text()[-3000:]
        time.sleep(0.2)
    assert "(no secret)" not in dev.text()


REFUSED_LINE = (
    r"RefreshApiFunction +1 record +1 refused: missing or wrong bearer secret, HTTP 401"
    r"  \(\d+ ms\)$"
)


def test_once_the_stack_stops_the_tools_no_longer_use_its_settings(dev: DevProcess) -> None:
    # Given the running stack's file, kept aside
    kept = dev.env_file.read_text()

    # When make dev stops, and a stale copy of its file is put back (a killed stack's)
    dev.process.send_signal(signal.SIGTERM)
    assert dev.process.wait(timeout=60) == 0
    removed = not dev.env_file.exists()
    dev.env_file.write_text(kept)
    status = run(str(ROOT / ".venv" / "bin" / "matchstats"), "status", env_file=dev.env_file)

    # Then make dev had removed its file, and the stale one points nothing at dead ports
    assert removed
    assert status.returncode == 1
    assert "start `make dev`" in status.stderr
    assert "cannot reach" not in status.stderr


def descendants(pid: int) -> set[int]:
    """The processes below `pid` now, from /proc (Linux)."""
    children: dict[int, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, set()).add(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), set()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has ended: it waits only to be reaped)."""
    running = set()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            running.add(pid)
    return running


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="PR_SET_PDEATHSIG is Linux's: elsewhere only a clean stop ends the children",
)
def test_make_dev_killed_outright_leaves_no_process_behind(tmp_path: Path) -> None:
    # Given `make dev` running: its Python, PostgreSQL, the fork server, the functions'
    # execution environments (moto's SQS and the console are threads of the Python)
    output = tmp_path / "out.txt"
    with output.open("w") as out:
        make = subprocess.Popen(  # noqa: S603 - our own Makefile
            [  # noqa: S607
                "make",
                "--no-print-directory",
                "dev",
                "SEED=none",
                f"DEV_ARGS=--log-dir {tmp_path / 'logs'}",
            ],
            cwd=ROOT,
            env=clean_environment(**{devenv.ENV_FILE_VARIABLE: str(tmp_path / "dev.env")}),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = DevProcess(make, tmp_path / "dev.env", tmp_path / "logs", output)
    started: set[int] = set()
    try:
        running.wait_for("^Invocations as they happen:", START_TIMEOUT_S)
        started = descendants(make.pid)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in alive(started))
        assert "devstack.dev" in commands
        assert "postgres" in commands
        assert "forkserver" in commands

        # When make is killed with SIGKILL (no handler, no atexit runs)
        make.kill()
        make.wait(timeout=10)

        # Then every process it had started ends within seconds
        deadline = time.monotonic() + 30
        while alive(started):
            assert time.monotonic() < deadline, (
                f"still running 30 s after kill -9: {sorted(alive(started))}\n{running.text()}"
            )
            time.sleep(0.2)
    finally:
        # Only the processes this test started, by their ids.
        for pid in alive(started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if make.poll() is None:
            make.kill()
            make.wait(timeout=10)
