"""Replication settings: topics on a cluster want min.insync.replicas, producers wait for it (pure)."""

from __future__ import annotations

import pytest

from csync.kafka_client import producer_options
from csync.settings import Settings, SettingsError
from csync.stack import ServiceInfo, Stack
from csync.topics import topic_specs, worker_topic_specs


def test_replicated_topics_want_min_insync_replicas() -> None:
    s = Settings.from_env(env={}, replication_factor=3, min_insync_replicas=2)
    specs = worker_topic_specs(s)
    assert specs and all(spec.config["min.insync.replicas"] == "2" for spec in specs)
    assert topic_specs(s)[0].config["retention.ms"] == str(s.retention_activity_ms)


def test_a_single_broker_keeps_the_specs_as_they_were() -> None:
    assert all("min.insync.replicas" not in spec.config for spec in topic_specs(Settings()))


def test_min_insync_cannot_exceed_the_replication_factor() -> None:
    with pytest.raises(SettingsError, match="MIN_INSYNC_REPLICAS"):
        Settings.from_env(env={"REPLICATION_FACTOR": "2", "MIN_INSYNC_REPLICAS": "3"})


def test_every_producer_waits_for_all_in_sync_replicas_and_is_idempotent() -> None:
    options = producer_options(Settings())
    assert options["acks"] == "all" and options["enable_idempotence"] is True


def test_a_cluster_stack_points_processes_at_every_node_with_replication() -> None:
    def node(port: int) -> ServiceInfo:
        return ServiceInfo("kafka", 1, port, f"127.0.0.1:{port}", "4.1.1", "/d", "/l")

    redis = ServiceInfo("redis", 1, 6379, "127.0.0.1:6379", "7", "/d", "/l")
    single = Stack("/r", node(9092), redis, "/c")
    cluster = Stack("/r", node(9092), redis, "/c", kafka_more=[node(9093), node(9094)])
    assert "REPLICATION_FACTOR" not in single.env()
    env = cluster.env()
    assert env["KAFKA_BOOTSTRAP"] == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert (env["REPLICATION_FACTOR"], env["MIN_INSYNC_REPLICAS"]) == ("3", "2")
    assert Settings.from_env(env=env).replication_factor == 3
