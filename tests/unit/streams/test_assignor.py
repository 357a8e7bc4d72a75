"""The worker group's assignor keeps partition p of the activity and roster topics on one member."""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from streams.assignor import CoPartitionedAssignor, deal

ACT, ROSTER = "device-activity.v1", "roster.v1"


class Cluster:
    """The one method of aiokafka's ClusterMetadata an assignor reads."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.partitions)) if topic in (ACT, ROSTER) else None


def cluster(partitions: int) -> Any:
    return Cluster(partitions)


def members(n: int) -> dict[str, ConsumerProtocolMemberMetadata]:
    return {f"worker-{i:02d}": CoPartitionedAssignor.metadata([ACT, ROSTER]) for i in range(n)}


def owners(assignment: dict[str, Any], topic: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for member, a in assignment.items():
        for t, parts in a.assignment:
            if t == topic:
                for p in parts:
                    assert p not in out, f"{topic}:{p} assigned twice"
                    out[p] = member
    return out


def test_every_member_count_keeps_roster_with_activity() -> None:
    for n in range(1, 12):
        got = CoPartitionedAssignor.assign(cluster(8), members(n))
        act, roster = owners(got, ACT), owners(got, ROSTER)
        assert set(act) == set(range(8)) and act == roster, n
        counts = [sum(1 for m in act.values() if m == member) for member in got]
        assert max(counts) - min(counts) <= 1, (n, counts)
        assert len(got) == n


def test_round_robin_splits_them_which_is_the_bug_this_fixes() -> None:
    got = RoundRobinPartitionAssignor.assign(cluster(8), members(3))
    assert owners(got, ACT) != owners(got, ROSTER)


def test_a_member_not_subscribed_to_a_topic_is_skipped_for_it() -> None:
    dealt = deal({ACT: range(4), ROSTER: range(4)}, {"a": [ACT, ROSTER], "b": [ACT]})
    assert dealt == {"a": {ACT: [0, 2], ROSTER: [0, 1, 2, 3]}, "b": {ACT: [1, 3]}}
    assert deal({ACT: range(2)}, {}) == {}
