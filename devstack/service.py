"""A local service that a `with` block starts and stops: the stack, its database, pooler,
proxy, SQS server and event source mappings all run this way.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from devstack.processes import free_port, read_tail

logger = logging.getLogger(__name__)

# How many free ports a server is tried on before its start fails.
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 30


class Service:
    """Subclasses define start() (the service running when it returns) and stop(); `with`
    calls them, and stop() runs however the block ends."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class PortInUseError(RuntimeError):
    """The server exited at startup because another process bound its port first."""


class LocalServer(Service):
    """A server process of ours (PostgreSQL, PgBouncer) on a free loopback port, with its
    files and its log in a temp dir (`base_dir`). Subclasses name their errors: `error`
    for any failure, `port_in_use` (a subclass of both) for a port taken under it."""

    error: ClassVar[type[Exception]] = RuntimeError
    port_in_use: ClassVar[type[PortInUseError]] = PortInUseError

    def __init__(self) -> None:
        self.base_dir: Path | None = None
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return read_tail(self.log_path, lines) if self.base_dir else ""

    def start_on_a_free_port(self, start_process: Callable[[], None]) -> None:
        """Sets `port` to a free one and calls `start_process`; again on another port while
        it fails with `port_in_use` (taken between free_port() and the bind)."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.port = free_port()
            try:
                start_process()
                return
            except PortInUseError:
                if attempt == _PORT_ATTEMPTS:
                    raise
                logger.info(
                    "port %s was taken before %s bound it; retrying", self.port, type(self).__name__
                )

    def fail_if_exited(self, name: str) -> None:
        """During startup: raises `port_in_use` or `error`, with the log's tail, when the
        process has already exited."""
        if self._process is None or self._process.poll() is None:
            return
        tail = self.log_tail()
        self._process = None
        if "Address already in use" in tail:
            raise self.port_in_use(f"port {self.port} is in use:\n{tail}")
        raise self.error(f"{name} exited during startup; log tail:\n{tail}")
