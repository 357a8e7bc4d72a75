"""The dead-letter queue: its records (CONTRACT §1 headers) and the limit on a flood of them.

Every producer of DLQ records — the stream worker and the device collector — builds them with
:func:`dlq_record`. :class:`DlqLimit` decides, per input partition, when invalid input is a flood
(a bug upstream or in the worker) that must stop the worker loudly instead of emptying the stream
into the DLQ.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from csync.settings import Settings

# (key, value, headers) of one DLQ record
DlqRecord = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
# source_topic of records the collector rejected (they never reached a topic)
COLLECTOR_SOURCE = "collector"


def dlq_record(
    key: bytes | None,
    raw: bytes,
    reason: str,
    detail: str,
    *,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    source_index: int,
) -> DlqRecord:
    """The DLQ record of one rejected event: its raw bytes and the CONTRACT §1 headers."""
    headers = [
        ("error", reason.encode()),
        ("error_detail", detail.encode()),
        ("source_topic", source_topic.encode()),
        ("source_partition", str(source_partition).encode()),
        ("source_offset", str(source_offset).encode()),
        ("source_index", str(source_index).encode()),
    ]
    return key, raw, headers


class DlqRateExceeded(RuntimeError):
    """Most recent events of a partition are invalid: a bug upstream or here; stop loudly instead of
    emptying the stream."""


@dataclass(slots=True)
class _Window:
    chunks: deque[tuple[bool, int]] = field(default_factory=deque)  # (invalid, count), oldest first
    total: int = 0
    invalid: int = 0
    consecutive: int = 0


class DlqLimit:
    """When invalid input stops the worker, judged per partition.

    It stops when more than ``max_ratio`` of the last ``window`` events of a partition were invalid
    (only once ``window`` events were seen), or when ``max_consecutive`` invalid events came without
    a valid one. A batch reports counts only, so within a batch the invalid events are taken to
    come first (a batch with any valid event ends a run of invalid ones).
    """

    __slots__ = ("max_ratio", "window", "max_consecutive", "_windows")

    def __init__(self, max_ratio: float, window: int, max_consecutive: int) -> None:
        if not 0 <= max_ratio <= 1 or window < 1 or max_consecutive < 1:
            raise ValueError(
                "DlqLimit: need 0 <= max_ratio <= 1, window >= 1, max_consecutive >= 1"
            )
        self.max_ratio, self.window, self.max_consecutive = max_ratio, window, max_consecutive
        self._windows: dict[int, _Window] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> DlqLimit:
        return cls(
            settings.worker_dlq_max_ratio,
            settings.worker_dlq_window,
            settings.worker_dlq_max_consecutive,
        )

    def forget(self, partition: int) -> None:
        """The partition left this worker."""
        self._windows.pop(partition, None)

    def record(self, partition: int, valid: int, invalid: int) -> None:
        """Count one batch of ``partition``; raises :class:`DlqRateExceeded` on a flood."""
        w = self._windows.get(partition)
        if w is None:
            w = self._windows[partition] = _Window()
        w.consecutive = 0 if valid else w.consecutive + invalid
        self._add(w, True, invalid)
        self._add(w, False, valid)
        if w.consecutive >= self.max_consecutive:
            raise DlqRateExceeded(
                f"{w.consecutive} consecutive invalid events in partition {partition}: stopping"
            )
        if w.total >= self.window:
            oldest_invalid, _n = w.chunks[0]
            bad = w.invalid - (w.total - self.window if oldest_invalid else 0)
            if bad > self.max_ratio * self.window:
                raise DlqRateExceeded(
                    f"{bad} of the last {self.window} events of partition {partition} were "
                    "invalid: stopping"
                )

    def _add(self, w: _Window, invalid: bool, n: int) -> None:
        if not n:
            return
        w.chunks.append((invalid, n))
        w.total += n
        w.invalid += n if invalid else 0
        while w.total - w.chunks[0][1] >= self.window:  # the oldest chunk is out of the window
            old_invalid, m = w.chunks.popleft()
            w.total -= m
            w.invalid -= m if old_invalid else 0
