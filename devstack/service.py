"""A local service that a `with` block starts and stops: the stack, its database, pooler,
proxy, SQS server and event source mappings all run this way.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
