"""The deadline behind a silently dropped connection: an action that runs when time is up,
unless the work finished first."""

from __future__ import annotations

import threading
import time

from matchstats.db.watchdog import Watchdog


def test_an_alarm_fires_once_its_time_is_up() -> None:
    # Given an alarm armed for 50 ms
    watchdog = Watchdog()
    fired = threading.Event()
    alarm = watchdog.arm(0.05, fired.set)

    # When the work does not finish, Then the action runs, about on time
    started = time.monotonic()
    assert fired.wait(2)
    assert 0.04 <= time.monotonic() - started < 1
    assert alarm.fired


def test_a_disarmed_alarm_never_fires() -> None:
    # Given two alarms, of which the earlier is disarmed before its time
    watchdog = Watchdog()
    actions: list[str] = []
    early = watchdog.arm(0.05, lambda: actions.append("early"))
    watchdog.arm(0.15, lambda: actions.append("late"))
    early.disarm()

    # When both deadlines have passed, Then only the armed one ran
    time.sleep(0.4)
    assert actions == ["late"]
    assert not early.fired


def test_an_alarm_without_a_deadline_never_fires_and_an_action_that_fails_stops_nothing() -> None:
    # Given an unlimited alarm, and one whose action raises
    watchdog = Watchdog()
    fired = threading.Event()
    unlimited = watchdog.arm(float("inf"), fired.set)

    def fail() -> None:
        raise RuntimeError("boom")

    watchdog.arm(0.01, fail)
    later = threading.Event()
    watchdog.arm(0.05, later.set)

    # Then the failing action did not stop the next, and the unlimited one stays quiet
    assert later.wait(2)
    assert not fired.is_set()
    unlimited.disarm()


def test_an_earlier_alarm_armed_after_a_later_one_still_fires_on_time() -> None:
    # Given an alarm for 2 s, which the watchdog thread now waits for
    watchdog = Watchdog()
    late = watchdog.arm(2, lambda: None)
    time.sleep(0.05)
    # ...and then one for 50 ms
    fired = threading.Event()
    started = time.monotonic()
    watchdog.arm(0.05, fired.set)

    # When its time is up, Then it runs, about on time, and the later one is still armed
    assert fired.wait(1)
    assert time.monotonic() - started < 0.5
    late.disarm()
    assert not late.fired
