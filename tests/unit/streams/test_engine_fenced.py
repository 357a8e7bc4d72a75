"""A partition fenced while the group still deals it to this worker makes the worker exit (its supervisor
restarts it) once ``FENCED_ASSIGNED_S`` passed without a rebalance; a fenced partition that the group moved
away is no reason to exit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition

from csync.settings import Settings
from streams.engine import FENCED_ASSIGNED_S, Engine


@dataclass
class Assigned:
    """The one consumer call the check makes."""

    partitions: set[TopicPartition] = field(default_factory=set)

    def assignment(self) -> set[TopicPartition]:
        return self.partitions


@dataclass
class Runner:
    fenced_at: dict[int, float] = field(default_factory=dict)


def _engine(assigned: set[int], fenced_at: dict[int, float]) -> Engine:
    eng = Engine(Settings())
    eng.consumer = Assigned({TopicPartition(eng.s.topic_activity, p) for p in assigned})
    eng.runner = Runner(fenced_at)  # type: ignore[assignment]
    return eng


def test_a_fenced_partition_still_assigned_after_the_grace_stops_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0 + FENCED_ASSIGNED_S + 1)
    with pytest.raises(RuntimeError, match=r"partitions \[2\] fenced but still assigned"):
        _engine({1, 2}, {2: 1000.0})._check_fenced()


def test_a_fenced_partition_within_the_grace_or_moved_away_is_no_reason_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0 + FENCED_ASSIGNED_S - 1)
    _engine({1, 2}, {2: 1000.0})._check_fenced()  # not yet: a rebalance may still come
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0 + FENCED_ASSIGNED_S + 1)
    _engine({1}, {2: 1000.0})._check_fenced()  # dealt to another worker: the normal case
