"""A TCP proxy on 127.0.0.1 in front of one server, with network faults to inject: the
benchmark's added latency, and the tests' dead links. Local tooling; never shipped.

What it can do to the traffic between a client (the functions' libpq) and the server:
- `delay_s`: hold every client-to-server chunk that long, in order; the server's answers
  pass straight back. Each of the client's waits on the server then takes `delay_s`
  longer, which is how the benchmark counts round trips.
- `blackhole()`: stop forwarding in both directions without closing anything, as a NAT
  or load balancer that forgot the connection, or a failover that left the socket open,
  does. Bytes sent meanwhile stay in the kernel's buffers; `resume()` forwards them and
  everything after, in order, as TCP would deliver them once the path is back.
- `cut()`: close every open connection (both sides, FIN), as a crashed server or a
  proxy restart does; new connections are accepted as before.

One limit to know when testing dead-peer detection: the client's TCP peer is this
proxy's kernel, which stays alive and keeps acknowledging what the client sends, and
its keepalive probes. So a blackhole here is found only by the client's own deadlines
(libpq's connect_timeout, a timeout on waiting for a result), never by TCP keepalives
or tcp_user_timeout, which would also fire on a real dropped path.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Self

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack.service import Service

_CHUNK = 65_536
_POLL_S = 0.2


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.cut = threading.Event()
        self._threads_left = 3
        self._lock = threading.Lock()

    def thread_done(self) -> bool:
        """True for the last of the link's three threads: it closes the sockets."""
        with self._lock:
            self._threads_left -= 1
            return self._threads_left == 0

    def shutdown(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.client.close()
        self.server.close()


class TcpProxy(Service):
    """Listens on 127.0.0.1, on a free port (`port`), and forwards to `target_host`:
    `target_port`; see the module's docstring for the faults. Start it with `with` or
    start(); stop() closes everything."""

    def __init__(self, target_host: str, target_port: int):
        self._target = (target_host, target_port)
        self.delay_s = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._links: set[_Link] = set()
        self._links_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @classmethod
    def in_front_of(cls, database_url: str) -> TcpProxy:
        """A proxy to the server of a libpq URL or key=value string (TCP hosts only)."""
        params = conninfo_to_dict(database_url)
        return cls(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))

    def url(self, database_url: str) -> str:
        """`database_url` through this proxy (a key=value conninfo string)."""
        return make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    # -- faults ----------------------------------------------------------------

    def blackhole(self) -> None:
        """Stop forwarding in both directions, on open and new connections alike; no
        socket is closed. Nothing crosses afterwards but a send already under way."""
        self._forwarding.clear()

    def resume(self) -> None:
        """Forward again, starting with what waited during the blackhole."""
        self._forwarding.set()

    def cut(self) -> int:
        """Close every open connection on both sides; returns how many there were."""
        with self._links_lock:
            links = list(self._links)
            self._links.clear()
        for link in links:
            link.cut.set()
            link.shutdown()
        return len(links)

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        with self._links_lock:
            return len(self._links)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._forwarding.set()
        self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(5)

    # -- forwarding ------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                # Polled: closing a listener does not wake a thread blocked in accept().
                ready, _, _ = select.select([self._listener], [], [], _POLL_S)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except (OSError, ValueError):
                return
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                # The server is down: the client sees its connection closed at once.
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, server)
            with self._links_lock:
                self._links.add(link)
            held: queue.Queue[tuple[float, bytes]] = queue.Queue()
            self._spawn(self._hold, link, held)
            self._spawn(self._release, link, held)
            self._spawn(self._pass, link)

    def _hold(self, link: _Link, held: queue.Queue[tuple[float, bytes]]) -> None:
        """Client to server, part 1: each chunk read is queued with the time it is due."""
        while data := self._read(link, link.client):
            held.put((time.monotonic() + self.delay_s, data))
        held.put((0.0, b""))
        self._finish(link)

    def _release(self, link: _Link, held: queue.Queue[tuple[float, bytes]]) -> None:
        """Client to server, part 2: each chunk sent once due, in order."""
        while True:
            due, data = held.get()
            if not data:
                _close_write(link.server)
                break
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._send(link, link.server, data)
        self._finish(link)

    def _pass(self, link: _Link) -> None:
        """Server to client, straight through."""
        while data := self._read(link, link.server):
            self._send(link, link.client, data)
        _close_write(link.client)
        self._finish(link)

    def _read(self, link: _Link, sock: socket.socket) -> bytes:
        """The next chunk from `sock`, read only while forwarding; b"" at its end, on a
        cut, or when the proxy stops."""
        while not (self._stopping.is_set() or link.cut.is_set()):
            if not self._forwarding.wait(_POLL_S):
                continue
            try:
                ready, _, _ = select.select([sock], [], [], _POLL_S)
                if ready:
                    return sock.recv(_CHUNK)
            except (OSError, ValueError):
                return b""
        return b""

    def _send(self, link: _Link, sock: socket.socket, data: bytes) -> None:
        # A chunk read just before blackhole() waits here, so nothing crosses after it.
        while not self._forwarding.wait(_POLL_S):
            if self._stopping.is_set() or link.cut.is_set():
                return
        with contextlib.suppress(OSError):
            sock.sendall(data)

    def _finish(self, link: _Link) -> None:
        if link.thread_done():
            with self._links_lock:
                self._links.discard(link)
            link.close()


def _close_write(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
