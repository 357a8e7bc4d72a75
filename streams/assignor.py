"""The worker group's partition assignor: partition ``p`` of every topic goes to one member.

A worker processes roster partition ``p`` together with activity partition ``p`` (both feed the
state of input partition ``p``). Kafka's default round-robin assignor deals the partitions of all
subscribed topics one after another, so whenever the member count does not divide the partition
count, roster ``p`` lands on another member than activity ``p`` — and neither can use it.
:class:`CoPartitionedAssignor` deals partition *numbers* instead: number ``p`` goes to the
``p``-th member (members sorted by id, cycling), with all topics' partition ``p``. That holds for
every member count and at every generation (a rebalance revokes everything and deals again).

The workers offer this assignor only. Offering round-robin as a second choice (so that a rolling
upgrade from a release without this assignor could keep the group on round-robin meanwhile) made
the group rebalance in a loop, one member per generation, after a few members were killed in
quick succession (measured on Kafka 4.1, classic protocol). So a group cannot mix this release's
workers with an earlier release's: Kafka refuses the join (``InconsistentGroupProtocol``). Upgrade
from such a release by stopping the old workers before starting the new ones; recovery is from the
batch log, so nothing is lost, and roster records an earlier release left unread are read then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


def deal(
    partitions: Mapping[str, Iterable[int]], subscriptions: Mapping[str, Iterable[str]]
) -> dict[str, dict[str, list[int]]]:
    """``{member: {topic: [partition, …]}}``: partition number ``p`` of every topic to one member.

    ``partitions`` are the partitions of each subscribed topic, ``subscriptions`` the topics of
    each member. Number ``p`` goes to the ``k``-th member in id order, ``k`` = the rank of ``p``
    among all partition numbers modulo the member count, so members differ by at most one number;
    a topic the owner is not subscribed to (members of mixed releases) goes to the next member
    that is.
    """
    members = sorted(subscriptions)
    subscribed = {m: set(subscriptions[m]) for m in members}
    out: dict[str, dict[str, list[int]]] = {m: {} for m in members}
    if not members:
        return out
    numbers = sorted({p for ps in partitions.values() for p in ps})
    by_topic = {t: set(ps) for t, ps in partitions.items()}
    for rank, p in enumerate(numbers):
        for topic in sorted(by_topic):
            if p not in by_topic[topic]:
                continue
            for step in range(len(members)):
                member = members[(rank + step) % len(members)]
                if topic in subscribed[member]:
                    out[member].setdefault(topic, []).append(p)
                    break
    return out


class CoPartitionedAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """Partition ``p`` of every subscribed topic to the same member (see the module docstring)."""

    name = "csync-copartitioned"
    version = 0

    @classmethod
    def assign(
        cls,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        subscriptions = {m: list(meta.subscription) for m, meta in members.items()}
        topics = {t for subs in subscriptions.values() for t in subs}
        partitions: dict[str, set[int]] = {}
        for topic in topics:
            found = cluster.partitions_for_topic(topic)
            if found:
                partitions[topic] = set(found)
        dealt = deal(partitions, subscriptions)
        return {
            m: ConsumerProtocolMemberAssignment(cls.version, sorted(dealt[m].items()), b"")
            for m in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        """Nothing to remember: every assignment is dealt afresh."""
