"""A deadline for work that waits on the network: when it passes, an action runs (the
connection's socket is shut down) unless the work finished and disarmed it first.

libpq has no client-side timeout for a query. The server's statement_timeout ends a slow
statement, but when the connection itself is gone without a word (a NAT or load balancer
that forgot it, a failover that left the socket open, a proxy that stops forwarding) no
answer ever comes back, and the client would wait until Lambda kills the invocation.
Shutting the socket down makes libpq's wait return at once with "server closed the
connection unexpectedly", which psycopg raises as an OperationalError: a transient failure
inside the invocation's time, with the backoff still to be arranged.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

from matchstats.observability import logger


class Alarm:
    """One armed deadline. `fired` says whether its action ran."""

    def __init__(self, watchdog: Watchdog, deadline: float, action: Callable[[], None]):
        self.deadline = deadline
        self.fired = False
        self._watchdog = watchdog
        self._action = action
        self._lock = threading.Lock()
        self._done = False

    def disarm(self) -> None:
        """The work ended: the action will not run (if it has not already)."""
        with self._lock:
            self._done = True
        self._watchdog._forget(self)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            self.fired = True
            try:
                self._action()
            except Exception:  # the watchdog must outlive any one action
                logger.exception("deadline action failed")


class Watchdog:
    """One daemon thread per process that fires alarms whose deadline (time.monotonic()
    seconds) has passed. Started on first use, and again in a forked child, which does
    not inherit threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._alarms: set[Alarm] = set()
        self._wakeup = threading.Condition()
        self._pid: int | None = None
        # When the thread will look at the alarms next (inf: not before it is woken).
        self._next_look = math.inf

    def arm(self, after_s: float, action: Callable[[], None]) -> Alarm:
        """Runs `action` in `after_s` seconds unless the returned alarm is disarmed first."""
        alarm = Alarm(self, self._clock() + after_s, action)
        if math.isinf(after_s):
            return alarm  # no deadline: never fires
        with self._wakeup:
            self._ensure_thread()
            self._alarms.add(alarm)
            # Woken only for an earlier deadline than it already waits for: every unit of
            # work arms an alarm, and waking the thread each time costs the work a switch.
            if alarm.deadline < self._next_look:
                self._next_look = alarm.deadline
                self._wakeup.notify()
        return alarm

    def _forget(self, alarm: Alarm) -> None:
        with self._wakeup:
            self._alarms.discard(alarm)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="matchstats-watchdog", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                due = [alarm for alarm in self._alarms if alarm.deadline <= self._clock()]
                self._alarms.difference_update(due)
                if not due:
                    next_deadline = min((alarm.deadline for alarm in self._alarms), default=None)
                    self._next_look = math.inf if next_deadline is None else next_deadline
                    timeout = None if next_deadline is None else next_deadline - self._clock()
                    self._wakeup.wait(timeout)
                    continue
            for alarm in due:
                alarm._fire()


WATCHDOG = Watchdog()
