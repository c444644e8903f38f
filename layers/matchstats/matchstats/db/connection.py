"""Database connections: one live connection per execution environment, reused across
invocations and trusted for nothing it did not set. Where the credentials come from, and
the libpq parameters every connection string carries, is db/conninfo.py's.

What the bundle relies on, it sets itself (SPEC section 4):
- every result comes back in binary, so the server's DateStyle, IntervalStyle or TimeZone
  cannot change how a value is read (psycopg reads text timestamps only in ISO DateStyle);
- every transaction is READ COMMITTED and READ WRITE, and starts with
  sql/transaction_settings.sql: search_path, timeouts from the invocation's remaining
  time, all local to the transaction, so a role's defaults and a pooled server connection
  see nothing left behind;
- behind a transaction pooler (DB_POOLER=transaction) nothing is prepared by name.

And what the network does to a warm connection:
- one found dead before a unit of work starts (a restart, a failover, a terminated
  backend) is replaced, once, before anything is sent;
- one that dies silently during the work is cut at the unit's deadline (db/watchdog.py),
  and TCP keepalives and tcp_user_timeout catch a dead peer sooner on a real network.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

from matchstats.config import DatabaseSettings, Pooler
from matchstats.db.conninfo import SecretFetcher, fetch_secret_json, resolve_conninfo, within_budget
from matchstats.db.errors import translate
from matchstats.db.sql import load_sql
from matchstats.db.watchdog import WATCHDOG, Watchdog
from matchstats.errors import ConfigurationError, DatabaseUnavailableError
from matchstats.observability import logger

# How much longer than the server's statement_timeout the client waits for an answer:
# a slow statement ends with the server's clean error first, and only a connection that
# says nothing at all is cut.
CLIENT_GRACE_MS = 1_000

BEGIN = b"BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"
# PostgreSQL server encodings whose Python codec has another name (PostgreSQL docs,
# "Character Set Support"; the rest, LATIN1 or EUC_JP say, Python finds as they are).
_PYTHON_CODECS = {"UTF8": "utf-8", "WIN866": "cp866", "WIN874": "cp874", "ALT": "cp866"}


def connect(conninfo: str) -> psycopg.Connection:
    """Autocommit, so that transactions are exactly the ones the bundle begins."""
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc


class BinaryCursor(psycopg.Cursor[Any]):
    """Asks for every result in binary: a binary timestamp or interval reads the same
    whatever the server's DateStyle or IntervalStyle (a text one does not: psycopg
    raises NotImplementedError for a timestamptz in any DateStyle but ISO)."""

    def __init__(self, connection: psycopg.Connection[Any], **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.format = pq.Format.BINARY


@dataclass(frozen=True)
class Limits:
    """The time one unit of work may take, in milliseconds.

    statement_timeout_ms bounds each statement on the server, and any idle moment inside
    the transaction; the client gives up CLIENT_GRACE_MS later; 0 means no limit at all
    (the operator's migrations). lock_timeout_ms bounds each lock wait. parallel_workers
    sets max_parallel_workers_per_gather (None: the server's).
    """

    statement_timeout_ms: int
    lock_timeout_ms: int
    parallel_workers: int | None = None


def settings_statement(schema: str, limits: Limits) -> tuple[bytes, dict[str, Any]]:
    """sql/transaction_settings.sql and its values: the first statement of every
    transaction. The search_path names `schema`, then pg_temp last, so that no temporary
    table can shadow the bundle's."""
    return load_sql("transaction_settings"), {
        "search_path": f"{_quote_identifier(schema)}, pg_temp",
        "statement_timeout_ms": str(limits.statement_timeout_ms),
        "lock_timeout_ms": str(limits.lock_timeout_ms),
        "parallel_workers": None
        if limits.parallel_workers is None
        else str(limits.parallel_workers),
    }


@contextlib.contextmanager
def bundle_transaction(conn: psycopg.Connection, schema: str, limits: Limits) -> Iterator[None]:
    """One READ COMMITTED, READ WRITE transaction that starts with the bundle's settings
    (settings_statement), committed when the block ends and rolled back when it raises.

    BEGIN and the settings go out in one round trip, so the transaction is never idle
    under the role's own idle_in_transaction_session_timeout or transaction_timeout.
    """
    with conn.pipeline():
        conn.execute(BEGIN)
        conn.execute(*settings_statement(schema, limits))
    try:
        yield
    except BaseException:
        if not (conn.closed or conn.broken):
            with contextlib.suppress(psycopg.Error):
                conn.execute(b"ROLLBACK")
        raise
    conn.execute(b"COMMIT")


class ConnectionProvider:
    """One connection per thread, opened on first use, reused while it is healthy.

    In Lambda a process serves one invocation at a time, so this is one connection per
    execution environment; the local event source mapping runs one worker per thread.
    """

    def __init__(
        self,
        conninfo: Callable[[], str],
        opener: Callable[[str], psycopg.Connection] = connect,
        *,
        pooler: Pooler = Pooler.NONE,
        schema: str = "public",
        watchdog: Watchdog = WATCHDOG,
    ):
        self._conninfo = conninfo
        self._opener = opener
        self._pooler = pooler
        self._schema = schema
        self._watchdog = watchdog
        self._local = threading.local()
        # Set when a prepared statement vanished under us: a pooler nobody told us about.
        self._never_prepare = pooler is Pooler.TRANSACTION

    @classmethod
    def from_settings(
        cls, settings: DatabaseSettings, fetch_secret: SecretFetcher = fetch_secret_json
    ) -> ConnectionProvider:
        return cls(
            lambda: resolve_conninfo(settings, fetch_secret),
            pooler=settings.db_pooler,
            schema=settings.db_schema,
        )

    @property
    def schema(self) -> str:
        return self._schema

    @contextlib.contextmanager
    def session(self, limits: Limits) -> Iterator[psycopg.Connection]:
        """This thread's connection for one unit of work that must end within `limits`.

        The caller begins its own transaction (BEGIN, then settings_statement). Every error
        leaves as DatabaseUnavailableError (transient) except errors that are not the
        database's, which leave as they are; either way a connection left unusable or
        mid-transaction is dropped.
        """
        unlimited = limits.statement_timeout_ms <= 0
        deadline_ms = limits.statement_timeout_ms + CLIENT_GRACE_MS
        # A new connection has the statement budget to be made, not the grace as well.
        conn = self._connection(None if unlimited else limits.statement_timeout_ms)
        alarm = self._watchdog.arm(
            float("inf") if unlimited else deadline_ms / 1000, lambda: _cut(conn)
        )
        try:
            yield conn
        except psycopg.Error as exc:
            self._after_error(conn, exc, dropped=alarm.fired)
            if alarm.fired:
                raise DatabaseUnavailableError(
                    f"no answer from the database within {deadline_ms} ms; the connection was"
                    f" dropped ({translate(exc)})"
                ) from exc
            raise translate(exc, pooler=self._pooler) from exc
        except BaseException as exc:
            self._after_error(conn, exc, dropped=alarm.fired)
            raise
        finally:
            alarm.disarm()

    @contextlib.contextmanager
    def transaction(self, limits: Limits) -> Iterator[psycopg.Connection]:
        """A session inside one bundle_transaction."""
        with self.session(limits) as conn, bundle_transaction(conn, self._schema, limits):
            yield conn

    def settings_statement(self, limits: Limits) -> tuple[bytes, dict[str, Any]]:
        """The first statement of a transaction: sql/transaction_settings.sql and its values."""
        return settings_statement(self._schema, limits)

    def get(self) -> psycopg.Connection:
        """This thread's connection, opened or replaced as needed, outside any unit of work
        (a benchmark warming up, a test looking at the wire)."""
        return self._connection(budget_ms=None)

    def close(self) -> None:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    # -- internals -------------------------------------------------------------

    def _connection(self, budget_ms: int | None) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and _usable(conn):
            return conn
        if conn is not None:
            # Found dead before anything was sent: replaced, and nobody's attempt is spent.
            logger.info("database connection found closed; reconnecting")
            self._local.conn = None
            conn.close()
        try:
            conninfo = self._conninfo()
        except ConfigurationError as exc:
            # A secret without a host, say: no connection, so the batch is retried (and
            # dead-lettered if it persists) like any other unreachable database.
            raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc
        conn = self._opener(within_budget(conninfo, budget_ms))
        conn.cursor_factory = BinaryCursor
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        conn.read_only = False
        if self._never_prepare:
            conn.prepare_threshold = None
        self._local.conn = conn
        return conn

    def _after_error(self, conn: psycopg.Connection, exc: BaseException, *, dropped: bool) -> None:
        """Keeps a connection that merely saw a statement fail and rolled back; drops one
        that broke, was cut, or stays mid-transaction."""
        status = pq.TransactionStatus
        if isinstance(exc, pg_errors.InvalidSqlStatementName) and not self._never_prepare:
            logger.warning(
                "a prepared statement vanished: the database is behind a transaction pooler."
                " Preparing is now off in this environment; set DB_POOLER=transaction."
            )
            self._never_prepare = True
            dropped = True
        # A read-only server is a standby a failover has not yet moved us from: reconnect.
        dropped = dropped or isinstance(exc, pg_errors.ReadOnlySqlTransaction)
        if not (dropped or conn.closed or conn.broken) and conn.info.transaction_status not in (
            status.IDLE,
            status.UNKNOWN,
        ):
            with contextlib.suppress(psycopg.Error):
                conn.execute(b"ROLLBACK")
        if dropped or conn.closed or conn.broken or conn.info.transaction_status != status.IDLE:
            if getattr(self._local, "conn", None) is conn:
                self._local.conn = None
            conn.close()


def storable(conn: psycopg.Connection) -> Callable[[str | None], str | None]:
    """Makes text from a message storable in this database: a character the server's
    encoding has no code for (an emoji in a LATIN1 database, say) is written as a
    backslash escape instead of failing the whole batch's statement. Identity on a UTF8
    or SQL_ASCII server."""
    encoding = str(conn.info.parameter_status("server_encoding") or "UTF8").upper()
    if encoding in ("UTF8", "SQL_ASCII"):
        return lambda text: text
    codec = _PYTHON_CODECS.get(encoding, encoding.lower())
    try:
        codecs.lookup(codec)
    except LookupError:
        codec = "ascii"

    def escape(text: str | None) -> str | None:
        if text is None:
            return None
        return text.encode(codec, errors="backslashreplace").decode(codec)

    return escape


def _usable(conn: psycopg.Connection) -> bool:
    """Whether a warm connection can take a unit of work, without a round trip.

    An idle connection has nothing to read: the server speaks only when asked (the bundle
    never LISTENs). So a readable socket means the server said goodbye: a FATAL on
    restart, failover or pg_terminate_backend, then the end of the stream.
    """
    if conn.closed or conn.broken:
        return False
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        fd = conn.fileno()
    except psycopg.OperationalError:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def _cut(conn: psycopg.Connection) -> None:
    """Shuts the connection's socket down under libpq, which wakes its wait with an error.
    A duplicate descriptor, so libpq's own stays valid until psycopg closes it."""
    try:
        fd = conn.fileno()
    except psycopg.OperationalError:
        return
    duplicate = os.dup(fd)
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return
    with sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
