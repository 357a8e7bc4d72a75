"""The sign-in throttle's rules with a fake clock: the limit, the window, forgetting, bounded memory."""

from __future__ import annotations

import pytest

from csync.settings import Settings, SettingsError
from csync.sign_in_throttle import SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_the_limit_until_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    throttle = SignInThrottle(3, 60.0, clock)
    for step in (0.0, 10.0, 10.0):
        clock.now += step
        assert throttle.retry_after_s("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 40  # the first failure (at 1000) leaves at 1060
    assert throttle.retry_after_s("10.0.0.2") == 0  # another address is not affected
    clock.now = 1059.5
    assert throttle.retry_after_s("10.0.0.1") == 1
    clock.now = 1060.0
    assert throttle.retry_after_s("10.0.0.1") == 0  # two failures left in the window
    throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 10  # now the one at 1010 is the oldest of three


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    throttle = SignInThrottle(2, 5.0, clock)
    throttle.failed("a")
    clock.now += 6
    throttle.failed("a")
    assert throttle.retry_after_s("a") == 0
    clock.now += 6
    assert throttle.retry_after_s("a") == 0
    assert throttle._failures == {}  # nothing kept for an address with no recent failure


def test_memory_is_bounded_by_forgetting_the_longest_idle_address() -> None:
    clock = Clock()
    throttle = SignInThrottle(1, 60.0, clock, max_addresses=2)
    throttle.failed("a")
    throttle.failed("b")
    throttle.failed("a")  # a is the most recent now
    throttle.failed("c")  # b, the longest idle, is forgotten
    assert set(throttle._failures) == {"a", "c"}
    assert throttle.retry_after_s("b") == 0
    assert throttle.retry_after_s("a") > 0


def test_settings_refuse_a_throttle_that_cannot_work() -> None:
    with pytest.raises(SettingsError, match="SIGN_IN_MAX_FAILURES"):
        Settings.from_env(env={"SIGN_IN_MAX_FAILURES": "0"})
    with pytest.raises(SettingsError, match="SIGN_IN_WINDOW_S"):
        Settings.from_env(env={"SIGN_IN_WINDOW_S": "0"})
    throttle = SignInThrottle.from_settings(Settings.from_env(env={"SIGN_IN_MAX_FAILURES": "7"}))
    assert (throttle.max_failures, throttle.window_s) == (7, 60.0)
