"""The real PgBouncer the pooler tier runs behind (devstack.pgbouncer): transaction
pooling in front of the test server, any database passed through, run unprivileged,
stopped by its PID, its log in its errors, and a server restart behind it survived."""

from __future__ import annotations

import os
import pwd
import uuid
from pathlib import Path

import psycopg
import pytest

from devstack.pgbouncer import PgBouncer, PgBouncerError
from devstack.postgres import EmbeddedPostgres, create_database, drop_database
from devstack.processes import UNPRIVILEGED_USER, free_port


def backend_pid(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_clients_of_any_database_take_turns_on_the_servers_connections(
    postgres_server_url: str, pgbouncer_path: Path
) -> None:
    # Given a database created after PgBouncer started, and PgBouncer with one server
    # connection per database in transaction mode
    name = f"test_bouncer_{uuid.uuid4().hex[:8]}"
    create_database(postgres_server_url, name)
    try:
        with PgBouncer(postgres_server_url, pool_size=1, binary=pgbouncer_path) as bouncer:
            url = bouncer.database_url(name)

            # When two clients, each on a connection of its own, run transactions
            with (
                psycopg.connect(url, autocommit=True) as first,
                psycopg.connect(url, autocommit=True) as second,
            ):
                where = first.execute("SELECT current_database()").fetchone()
                pids = {
                    conn.execute("SELECT pg_backend_pid()").fetchone() for conn in (first, second)
                }
                # ...and one leaves session state behind
                first.execute("SET application_name = 'left behind'")
                seen = second.execute("SHOW application_name").fetchone()
    finally:
        drop_database(postgres_server_url, name)

    # Then they reached the database they named, on the same server connection, and
    # the second sees the state the first left: a transaction pooler, as in production
    assert where == (name,)
    assert len(pids) == 1
    assert seen == ("left behind",)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to hand PgBouncer to another user")
def test_as_root_it_runs_unprivileged_and_stop_ends_it_and_its_files(
    postgres_server_url: str, pgbouncer_path: Path
) -> None:
    # Given PgBouncer started by root
    bouncer = PgBouncer(postgres_server_url, binary=pgbouncer_path).start()
    pid, base_dir = bouncer.pid, bouncer.base_dir
    assert pid is not None
    assert base_dir is not None
    try:
        # Then it runs as the unprivileged user, and answers
        assert process_uid(pid) == pwd.getpwnam(UNPRIVILEGED_USER).pw_uid
        assert backend_pid(bouncer.url) > 0
    finally:
        # When it is stopped
        bouncer.stop()

    # Then its process and its config and log are gone
    assert not Path(f"/proc/{pid}").exists()
    assert not base_dir.exists()


def test_a_server_it_cannot_reach_fails_the_start_with_its_log(pgbouncer_path: Path) -> None:
    # Given a server URL nobody listens on
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"

    # When PgBouncer is started in front of it
    with pytest.raises(PgBouncerError) as failed:
        PgBouncer(nowhere, binary=pgbouncer_path).start()

    # Then the error says so, with PgBouncer's own log lines
    message = str(failed.value)
    assert "cannot reach the server" in message
    assert "log tail:" in message
    assert "process up: PgBouncer" in message


def test_its_clients_keep_their_connections_across_a_server_restart(
    restartable_postgres: EmbeddedPostgres, pgbouncer: PgBouncer
) -> None:
    # Given a client connected through PgBouncer, which has run a transaction
    with psycopg.connect(pgbouncer.url, autocommit=True) as client:
        before = client.execute("SELECT pg_backend_pid()").fetchone()

        # When the server restarts between two of its transactions
        restartable_postgres.stop_server()
        restartable_postgres.start_server()

        # Then its next transaction runs, on a new server connection, over the same
        # client connection
        after = client.execute("SELECT pg_backend_pid()").fetchone()
    assert after is not None
    assert after != before
