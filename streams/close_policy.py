"""When the worker closes silent devices: only when no arrival of theirs can still be pending.

A device's last event is finalised by the arrival clock (CONTRACT §5). That is safe only when
the partition is read to its end (fresh end offsets) and the input path has been watched and
healthy for ``USAGE_CLOSE_AFTER_S``: behind a backlog (restart, rebalance) or across a broker
outage (producers buffer and re-send), a device's next events may still come, and closing it
would attribute a full MAX_GAP to the old app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# A gap this long between two end-offset probes is a period nobody watched the input (the loop was
# blocked, e.g. awaiting acks from a broker that went away): it counts as unhealthy.
PROBE_GAP_MS = 5_000
PROBE_TIMEOUT_S = 2.0


class InputHealth:
    """Whether a silent device may be closed: the input has been watched and healthy, without a
    break, for ``close_after_ms``.

    Watched means end-offset probes answered, each within :data:`PROBE_GAP_MS` of the previous
    one. A failed probe, or a gap between probes (the loop stuck emitting while the broker was
    down never probes at all), starts the window again: producers may have been buffering events
    the whole time, and a device's next events may still be on their way.
    """

    __slots__ = ("close_after_ms", "_since", "_last_ok")

    def __init__(self, close_after_ms: int, now_ms: int) -> None:
        self.close_after_ms = close_after_ms
        self._since = now_ms  # start of the current healthy window (the worker's start)
        self._last_ok = now_ms

    def failed(self, now_ms: int) -> bool:
        """A probe failed. Returns whether that is news (no failure in the last second: log it)."""
        was = now_ms - self._since > 1000
        self._since = now_ms
        return was

    def answered(self, now_ms: int) -> bool:
        """A probe answered. Returns whether closing silent devices is safe now."""
        if now_ms - self._last_ok > PROBE_GAP_MS:
            self._since = now_ms  # nobody watched the input in between
        self._last_ok = now_ms
        return now_ms - self._since >= self.close_after_ms


# partitions -> their end offsets (the next offset to be written), from the broker
EndOffsets = Callable[[list[int]], Awaitable[dict[int, int]]]


async def settled_ends(
    health: InputHealth, end_offsets: EndOffsets, partitions: list[int], now_ms: int
) -> dict[int, int]:
    """End offsets of these activity partitions when closing silent devices is safe, else {}.

    Safe means: the broker answers now, and has answered every probe, without a gap, for the
    last ``USAGE_CLOSE_AFTER_S`` (:class:`InputHealth`).
    """
    try:
        ends = await asyncio.wait_for(end_offsets(partitions), timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the broker is away: producers may be buffering events
        if health.failed(now_ms):
            log.warning("end offsets unavailable (%s): closing silent devices paused", exc)
        return {}
    if not health.answered(now_ms):
        return {}
    return ends


def closes(partition: int, read_to: int, ends: dict[int, int]) -> bool:
    """Whether this batch of ``partition`` closes silent devices: its end offset is settled and
    the batch reads up to it (``read_to`` is the next offset after the batch)."""
    return partition in ends and read_to >= ends[partition]
