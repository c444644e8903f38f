"""Serves the console with waitress on 127.0.0.1, never another address."""

from __future__ import annotations

import contextlib
import secrets
import threading
from types import TracebackType
from typing import Any

from waitress.server import create_server

from ops.console.app import TOKEN_PARAMETER, create_app
from ops.console.data import ConsoleData

LOOPBACK = "127.0.0.1"


class ConsoleServer:
    """The console on a free port of 127.0.0.1 (or `port`), in a thread of its own.
    `url` carries the login token; `base_url` does not."""

    def __init__(self, data: ConsoleData, port: int = 0) -> None:
        self._data = data
        self._token = secrets.token_urlsafe(24)
        # The host is fixed: the console holds no credentials of its own but shows and
        # acts on the pipeline, so it is for the person at this machine only.
        late = _LateApp()
        self._server: Any = create_server(
            late, host=LOOPBACK, port=port, threads=4, ident="matchstats-console"
        )
        self.port = int(self._server.effective_port)
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.url = f"{self.base_url}/?{TOKEN_PARAMETER}={self._token}"
        self.app = create_app(
            data,
            token=self._token,
            allowed_hosts={f"{LOOPBACK}:{self.port}", f"localhost:{self.port}"},
        )
        late.app = self.app
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)

    def start(self) -> ConsoleServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed by stop()
            self._server.run()

    def serve_forever(self) -> None:
        """In this thread, until interrupted."""
        self._server.run()

    def stop(self) -> None:
        self._server.close()
        if self._thread.is_alive():
            self._thread.join(5)
        self._data.close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class _LateApp:
    """The WSGI application, set once the port (which the app checks Host against) is
    known: waitress binds before the app can be built."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)
