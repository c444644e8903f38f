"""The embedded PostgreSQL server that tests and the local demo run against."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack.postgres import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    create_database,
    drop_database,
    postgres_server,
)


def _postgres_children() -> set[int]:
    """PIDs of postgres processes whose parent is this test process."""
    children = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:
            continue  # the process exited while we looked
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if comm == "postgres" and ppid == os.getpid():
            children.add(int(text.split()[0]))
    return children


def _process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return int(uid_line.split()[1])


def _table_exists(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture
def server() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as pg:
        yield pg


def test_server_answers_on_loopback_and_stop_leaves_nothing_behind() -> None:
    # Given a freshly started embedded server
    pg = EmbeddedPostgres()
    pg.start()
    try:
        pid, base_dir = pg.pid, pg.base_dir
        assert pid is not None
        assert base_dir is not None

        # When we ask it who it is and where it listens
        with psycopg.connect(pg.url) as conn:
            version = conn.execute("SELECT version()").fetchone()
            version_num = conn.execute("SHOW server_version_num").fetchone()
            listen = conn.execute("SHOW listen_addresses").fetchone()
    finally:
        pg.stop()

    # Then it is a recent PostgreSQL reachable on loopback only
    assert version is not None
    assert version[0].startswith("PostgreSQL ")
    assert version_num is not None
    assert int(version_num[0]) >= 150000
    assert listen == ("127.0.0.1",)
    assert pg.url.startswith("postgresql://postgres@127.0.0.1:")
    # And after stop() neither the process nor its data remain
    assert not _process_exists(pid)
    assert not base_dir.exists()
    assert pid not in _postgres_children()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs an unprivileged server user")
def test_server_never_runs_as_root(server: EmbeddedPostgres) -> None:
    # Given a server started by root (as in CI)
    assert server.pid is not None

    # When we look at the postmaster's owner
    uid = _process_uid(server.pid)

    # Then it runs unprivileged, as postgres insists
    assert uid != 0


def test_restarting_the_server_keeps_data_and_port(server: EmbeddedPostgres) -> None:
    # Given a table with a row
    with psycopg.connect(server.url) as conn:
        conn.execute("CREATE TABLE survivor (id int PRIMARY KEY)")
        conn.execute("INSERT INTO survivor VALUES (1)")
    url_before, pid_before = server.url, server.pid

    # When the postmaster is stopped and started again
    server.stop_server()
    stopped_pid_gone = pid_before is not None and not _process_exists(pid_before)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=2).close()
    server.start_server()

    # Then it is back on the same URL with the data intact
    assert stopped_pid_gone
    assert server.url == url_before
    assert server.pid != pid_before
    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT id FROM survivor").fetchall() == [(1,)]


def test_restart_on_a_taken_port_fails_with_the_server_log(server: EmbeddedPostgres) -> None:
    # Given a stopped server whose port another process has grabbed meanwhile
    server.stop_server()
    assert server.port is not None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        # The server's closed sessions may leave the port in TIME_WAIT; SO_REUSEADDR binds
        # through that (as postgres itself does) but not through a listener, which is the
        # point of the test.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()

        # When the server is started again
        with pytest.raises(EmbeddedPostgresError) as error:
            server.start_server()

    # Then the error carries the server log explaining why
    assert "Address already in use" in str(error.value)
    assert not server.running


def test_module_databases_are_isolated(postgres_server_url: str, empty_database_url: str) -> None:
    # Given this module's database and another module's database on the same server
    other_name = f"test_other_{uuid.uuid4().hex[:8]}"
    other_url = create_database(postgres_server_url, other_name)
    try:
        # When this module creates a table
        with psycopg.connect(empty_database_url) as conn:
            conn.execute("CREATE TABLE only_here (id int)")

        # Then only this module's database has it
        assert _table_exists(empty_database_url, "only_here")
        assert not _table_exists(other_url, "only_here")
    finally:
        drop_database(postgres_server_url, other_name)


def test_drop_database_disconnects_sessions_and_removes_it(postgres_server_url: str) -> None:
    # Given a database with an open session (quoting handles awkward names)
    name = f"Test Drop-{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    session = psycopg.connect(url)
    try:
        # When it is dropped
        drop_database(postgres_server_url, name)
    finally:
        session.close()

    # Then it is gone
    with psycopg.connect(postgres_server_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert row.fetchone() == (0,)


def test_database_url_points_at_a_running_server_and_starts_nothing(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DATABASE_URL naming an already running server
    monkeypatch.setenv("DATABASE_URL", postgres_server_url)
    children_before = _postgres_children()

    # When a server is requested
    with postgres_server() as url:
        children_during = _postgres_children()

    # Then that server is used as is: nothing started, and it is still up afterwards
    assert url == postgres_server_url
    assert children_during == children_before
    with psycopg.connect(postgres_server_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_without_database_url_an_embedded_server_lives_for_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no DATABASE_URL
    monkeypatch.delenv("DATABASE_URL", raising=False)
    children_before = _postgres_children()

    # When a server is requested
    with postgres_server() as url:
        started = _postgres_children() - children_before
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

    # Then exactly one postmaster was started for the block and stopped after it
    assert len(started) == 1
    assert not any(_process_exists(pid) for pid in started)
