"""What a database write costs on the wire: statements and syncs from libpq's protocol
trace, and network round trips measured by delaying the client's traffic.

A round trip is a wait: the client sends and cannot go on until the server answers.
Pipelined messages share one wait. So delaying every client-to-server chunk by d adds
d per round trip, whatever the driver batches: round trips = extra time / d.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_CHUNK = 65_536


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that holds every client-to-server chunk for `delay_s`
    (in order) and passes the server's answers straight back."""

    def __init__(self, target_host: str, target_port: int):
        self._target = (target_host, target_port)
        self.delay_s = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    @classmethod
    def in_front_of(cls, database_url: str) -> LatencyProxy:
        params = conninfo_to_dict(database_url)
        return cls(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))

    def url(self, database_url: str) -> str:
        """`database_url` through this proxy."""
        return make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    def __enter__(self) -> Self:
        self._spawn(self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(sock)
            held: queue.Queue[tuple[float, bytes]] = queue.Queue()
            self._spawn(self._hold, client, held)
            self._spawn(self._release, held, server)
            self._spawn(self._pass, server, client)

    def _hold(self, source: socket.socket, held: queue.Queue[tuple[float, bytes]]) -> None:
        while data := self._read(source):
            held.put((time.monotonic() + self.delay_s, data))
        held.put((0.0, b""))

    def _release(self, held: queue.Queue[tuple[float, bytes]], sink: socket.socket) -> None:
        while True:
            due, data = held.get()
            if not data:
                _close_write(sink)
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with contextlib.suppress(OSError):
                sink.sendall(data)

    def _pass(self, source: socket.socket, sink: socket.socket) -> None:
        while data := self._read(source):
            with contextlib.suppress(OSError):
                sink.sendall(data)
        _close_write(sink)

    def _read(self, sock: socket.socket) -> bytes:
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.2)
                if ready:
                    return sock.recv(_CHUNK)
            except (OSError, ValueError):
                return b""
        return b""


def _close_write(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


@dataclass(frozen=True)
class WireCount:
    """Per unit of work (a batch): what the client sent and how often it waited."""

    # From libpq's trace (Linux only; None elsewhere).
    statements: float | None  # Query or Execute messages: BEGIN and COMMIT included
    syncs: float | None  # Sync messages: the points where the server reports back
    round_trips: float  # measured: the client's waits on the server

    def as_dict(self) -> dict[str, float | None]:
        return {"statements": self.statements, "syncs": self.syncs, "round_trips": self.round_trips}


def round_trips(plain_s: float, delayed_s: float, units: int, delay_s: float) -> float:
    """Waits per unit of work, from the time the same work took without and with the
    added client-to-server delay."""
    return (delayed_s - plain_s) / (units * delay_s)


class ProtocolTrace:
    """libpq's protocol trace of every connection opened through `opener`, counted by
    frontend message type when it stops."""

    def __init__(self, connect: Callable[[str], psycopg.Connection]):
        self._connect = connect
        self._dir = tempfile.TemporaryDirectory(prefix="bench-trace-")
        self._traced: list[tuple[psycopg.Connection, IO[str]]] = []
        self.supported = True

    def opener(self, conninfo: str) -> psycopg.Connection:
        conn = self._connect(conninfo)
        stream = (Path(self._dir.name) / f"{len(self._traced)}.trace").open("w")
        try:
            conn.pgconn.trace(stream.fileno())
        except psycopg.NotSupportedError:
            self.supported = False
            stream.close()
            return conn
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        self._traced.append((conn, stream))
        return conn

    def stop(self) -> Counter[str] | None:
        """Frontend messages by type; None where libpq cannot trace (not Linux)."""
        counts: Counter[str] = Counter()
        for conn, stream in self._traced:
            if not conn.closed:
                conn.pgconn.untrace()
            stream.close()
            for line in Path(stream.name).read_text().splitlines():
                # "F\t<length>\t<message> ...": F for frontend (client) messages.
                fields = line.split("\t")
                if len(fields) >= 3 and fields[0] == "F":
                    counts[fields[2].split(" ", 1)[0]] += 1
        self._dir.cleanup()
        return counts if self.supported else None


def per_unit(counts: Counter[str] | None, units: int, measured_round_trips: float) -> WireCount:
    return WireCount(
        statements=(counts["Execute"] + counts["Query"]) / units if counts is not None else None,
        syncs=counts["Sync"] / units if counts is not None else None,
        round_trips=round(measured_round_trips, 2),
    )
