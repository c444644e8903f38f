"""What a database write costs on the wire: statements and syncs from libpq's protocol
trace, and network round trips measured by delaying the client's traffic.

A round trip is a wait: the client sends and cannot go on until the server answers.
Pipelined messages share one wait. So delaying every client-to-server chunk by d adds
d per round trip, whatever the driver batches: round trips = extra time / d. The delay
is devstack.tcp_proxy.TcpProxy's `delay_s`, the proxy the fault-injection tests use too.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
from psycopg import pq


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
