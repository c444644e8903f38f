"""A real PgBouncer on 127.0.0.1 in front of a PostgreSQL server, for tests and the local
stack: the transaction pooler (as RDS Proxy and most PgBouncer deployments run it) that
the functions meet in production. Never shipped to Lambda.

PgBouncer is not a Python package: it comes from the system (Debian/Ubuntu
`apt-get install pgbouncer`, macOS `brew install pgbouncer`), found on PATH, in /usr/sbin,
or at $MATCHSTATS_PGBOUNCER_BIN. Where it is absent, `PgBouncerNotInstalledError` says so
and the tests that need it are skipped with that reason.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack.postgres import database_url
from devstack.processes import (
    make_traversable_by_others,
    spawn,
    terminate,
    unprivileged_user,
)
from devstack.service import LocalServer, PortInUseError

PGBOUNCER_BIN_ENV = "MATCHSTATS_PGBOUNCER_BIN"
INSTALL_HINT = (
    "install PgBouncer (Debian/Ubuntu: apt-get install pgbouncer; macOS: brew install"
    f" pgbouncer) or set {PGBOUNCER_BIN_ENV}"
)

PoolMode = Literal["session", "transaction", "statement"]

_READY_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_SERVER_CHECK_TIMEOUT_S = 5
# Debian's PgBouncer (1.18) has no prepared-statement support; from 1.21 on it has, off
# by default until 1.24. Pinned off, every version behaves as the one the bundle meets.
_PREPARED_STATEMENTS_SINCE = (1, 21)


class PgBouncerError(RuntimeError):
    """PgBouncer could not be started or stopped."""


class _PortInUseError(PortInUseError, PgBouncerError):
    pass


class PgBouncerNotInstalledError(PgBouncerError):
    """No pgbouncer executable on this machine; the message says how to install one."""


def pgbouncer_binary() -> Path:
    """$MATCHSTATS_PGBOUNCER_BIN, else `pgbouncer` on PATH, else /usr/sbin/pgbouncer
    (Debian installs it there, outside a normal user's PATH).

    Raises PgBouncerNotInstalledError when none is executable."""
    override = os.environ.get(PGBOUNCER_BIN_ENV)
    candidates = (
        [override]
        if override
        else [shutil.which("pgbouncer"), shutil.which("pgbouncer", path="/usr/sbin")]
    )
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    where = override or "PATH or /usr/sbin"
    raise PgBouncerNotInstalledError(f"no pgbouncer executable in {where}: {INSTALL_HINT}")


def pgbouncer_version(binary: Path) -> tuple[int, ...]:
    """(1, 18, 0) from `pgbouncer --version`'s first line, "PgBouncer 1.18.0"."""
    output = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    found = re.search(r"PgBouncer (\d+(?:\.\d+)*)", output)
    if not found:
        raise PgBouncerError(f"cannot read the version of {binary} from {output!r}")
    return tuple(int(part) for part in found.group(1).split("."))


class PgBouncer(LocalServer):
    """PgBouncer on 127.0.0.1 on a free port, passing any database name through to the
    server of `server_url` (host, port, user and password taken from it).

    Clients log in without a password (auth_type `any`); PgBouncer logs in to the server
    as the URL's user. Config and log (its stderr) live in a temp dir removed on stop().
    When we are root it runs as `nobody` (it refuses root); it is shut down when we die.
    """

    error = PgBouncerError
    port_in_use = _PortInUseError

    def __init__(
        self,
        server_url: str,
        pool_mode: PoolMode = "transaction",
        pool_size: int = 5,
        binary: Path | None = None,
    ) -> None:
        super().__init__()
        self.server_url = server_url
        self.pool_mode = pool_mode
        # Fewer server connections than clients, as in production: client transactions
        # take turns on them, which is what breaks session state and named statements.
        self.pool_size = pool_size
        self.binary = binary or pgbouncer_binary()
        self.version = pgbouncer_version(self.binary)
        self._run_as = unprivileged_user()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        """Write the config and start PgBouncer; ready when it answers a query through
        to the server. PgBouncerError with the log's tail when it does not."""
        if self.base_dir is not None:
            raise PgBouncerError("PgBouncer already started")
        _live.add(self)
        self.base_dir = Path(tempfile.mkdtemp(prefix="matchstats-pgbouncer-"))
        try:
            if self._run_as is not None:
                os.chown(self.base_dir, self._run_as.pw_uid, self._run_as.pw_gid)
                make_traversable_by_others(self.base_dir.parent)
            self.start_on_a_free_port(self._start_process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Immediate shutdown (SIGTERM) by PID, then delete the temp dir. Idempotent."""
        process, self._process = self._process, None
        try:
            if process is not None:
                terminate(process, signal.SIGTERM, _STOP_TIMEOUT_S)
        finally:
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None
            _live.discard(self)

    # -- use -------------------------------------------------------------------

    def url_for(self, database_url_: str) -> str:
        """`database_url_` (a database on the server) routed through PgBouncer: same
        database name and user, PgBouncer's host and port, no password."""
        if self.port is None:
            raise PgBouncerError("start() has not been called")
        parts = urlsplit(database_url_)
        if parts.scheme in ("postgresql", "postgres"):
            user = parts.username or "postgres"
            netloc = f"{user}@127.0.0.1:{self.port}"
            return urlunsplit(parts._replace(netloc=netloc))
        params = conninfo_to_dict(database_url_)
        params.pop("password", None)
        return make_conninfo("", **params, host="127.0.0.1", port=str(self.port))

    @property
    def url(self) -> str:
        """The server's own database (of `server_url`) through PgBouncer."""
        return self.url_for(self.server_url)

    def database_url(self, name: str) -> str:
        """Database `name` on the server, through PgBouncer."""
        return self.url_for(database_url(self.server_url, name))

    @property
    def log_path(self) -> Path:
        if self.base_dir is None:
            raise PgBouncerError("start() has not been called")
        return self.base_dir / "pgbouncer.log"

    # -- internals -------------------------------------------------------------

    def _config(self) -> str:
        assert self.base_dir is not None
        assert self.port is not None
        server = conninfo_to_dict(self.server_url)
        target = {
            "host": server.get("host") or "127.0.0.1",
            "port": server.get("port") or "5432",
            "user": server.get("user") or "postgres",
            "password": server.get("password"),
        }
        # No dbname: `*` is the fallback database, so any name a client asks for
        # (tests create one per module) is passed through to the server as is.
        lines = [
            "[databases]",
            f"* = {make_conninfo(**{k: str(v) for k, v in target.items() if v})}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            # No Unix socket: parallel runs never share /tmp/.s.PGSQL.<port>.
            "unix_socket_dir =",
            # `any`: no password check, the user name is ignored, and the database line
            # says whom to log in to the server as (PgBouncer's auth_type docs).
            "auth_type = any",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 500",
        ]
        if server.get("sslmode"):
            lines.append(f"server_tls_sslmode = {server['sslmode']}")
        if self.version >= _PREPARED_STATEMENTS_SINCE:
            lines.append("max_prepared_statements = 0")
        return "\n".join(lines) + "\n"

    def _start_process(self) -> None:
        assert self.base_dir is not None
        config = self.base_dir / "pgbouncer.ini"
        config.write_text(self._config())
        # It may hold the server's password: readable by PgBouncer's user only.
        config.chmod(0o600)
        if self._run_as is not None:
            os.chown(config, self._run_as.pw_uid, self._run_as.pw_gid)
        # No logfile setting: it logs to stderr, which goes to our log file, so even a
        # config error it reports before it would open one is in log_tail().
        with self.log_path.open("ab") as output:
            self._process = spawn(
                [str(self.binary), str(config)],
                cwd=self.base_dir,
                stdout=output,
                run_as=self._run_as,
                # SIGTERM: immediate shutdown.
                parent_death_signal=signal.SIGTERM,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        assert self.port is not None
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            self.fail_if_exited("pgbouncer")
            if _accepts(self.port):
                break
            if time.monotonic() > deadline:
                raise PgBouncerError(
                    f"pgbouncer did not listen within {_READY_TIMEOUT_S:.0f} s;"
                    f" log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        try:
            # A server it cannot reach keeps the first client waiting (server_login_retry)
            # rather than failing it: this timeout is what ends the wait.
            with psycopg.connect(self.url, connect_timeout=_SERVER_CHECK_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise PgBouncerError(
                f"pgbouncer listens but cannot reach the server: {exc}\nlog tail:\n"
                + self.log_tail()
            ) from exc


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# Still running at interpreter exit (a run interrupted by Ctrl-C).
_live: set[PgBouncer] = set()


@atexit.register
def _stop_live() -> None:
    for bouncer in list(_live):
        with contextlib.suppress(Exception):
            bouncer.stop()
