"""Time arithmetic of the contract: UTC minutes and days in epoch milliseconds, and ``NEVER``.

Usage cells are UTC minutes (CONTRACT §5) and student tokens change with the UTC day; every module
that cuts time into minutes or days uses these.
"""

from __future__ import annotations

from typing import Final

SECOND_MS: Final = 1000
MINUTE_MS: Final = 60 * SECOND_MS
HOUR_MS: Final = 60 * MINUTE_MS
DAY_S: Final = 86_400
DAY_MS: Final = DAY_S * SECOND_MS
NEVER: Final = -(2**62)  # "no time yet" for clocks and deadlines: earlier than any real time


def minute_start(t_ms: int) -> int:
    """The start (ms) of the UTC minute holding ``t_ms``."""
    return t_ms - t_ms % MINUTE_MS


def day_of_ms(t_ms: int) -> int:
    """The UTC day number (days since 1970-01-01) of an epoch-ms time."""
    return t_ms // DAY_MS


def day_of_minute(minute_epoch_s: int) -> int:
    """The UTC day number of a minute given in epoch seconds."""
    return minute_epoch_s // DAY_S


def split_minutes(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Split ``[start_ms, end_ms)`` at UTC minute boundaries: ``[(minute_epoch_s, ms), ...]``,
    every ``ms > 0``."""
    out: list[tuple[int, int]] = []
    t = start_ms
    while t < end_ms:
        minute = t - t % MINUTE_MS
        nxt = min(minute + MINUTE_MS, end_ms)
        out.append((minute // 1000, nxt - t))
        t = nxt
    return out
