"""``csync stack up|down|status`` and ``csync status``: the local stack of real services."""

from __future__ import annotations

import os
from pathlib import Path

import click

from csync import stack as local_stack
from csync.config import settings_from_env


def _data_root() -> Path:
    return Path(settings_from_env().data_dir)


@click.group("stack")
def stack() -> None:
    """The local stack: real Kafka 4 (KRaft), redis-server (or a Redis Cluster) and the chDB
    folder."""


@stack.command("up")
@click.option("--kafka-port", type=int, default=lambda: int(os.environ.get("KAFKA_PORT", "9092")))
@click.option("--redis-port", type=int, default=lambda: int(os.environ.get("REDIS_PORT", "6379")))
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=lambda: int(os.environ.get("KAFKA_BROKERS", "1")),
    help="Kafka nodes: 1, or a KRaft cluster on KAFKA_PORT, KAFKA_PORT+1 … (3: replication factor 3, "
    "min.insync.replicas 2).",
)
@click.option(
    "--redis-cluster/--no-redis-cluster",
    default=lambda: os.environ.get("REDIS_CLUSTER", "") in ("1", "true", "yes"),
    help="Redis as a local Redis Cluster (3 masters + 3 replicas on REDIS_PORT … REDIS_PORT+5; "
    "REDIS_URL=redis+cluster://…) instead of one redis-server.",
)
def stack_up(kafka_port: int, redis_port: int, brokers: int, redis_cluster: bool) -> None:
    """Start Kafka and Redis (idempotent: says so when they already run)."""
    data_root = _data_root()
    try:
        running = local_stack.up(
            data_root, kafka_port=kafka_port, redis_port=redis_port, brokers=brokers,
            redis_cluster=redis_cluster,
        )  # fmt: skip
    except local_stack.StackError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in local_stack.status(data_root):
        click.echo(line)
    click.echo(f"# export {' '.join(f'{k}={v}' for k, v in running.env().items())}")


@stack.command("down")
def stack_down() -> None:
    """Stop what ``stack up`` started; data stays (``make clean`` removes it)."""
    stopped = local_stack.down(_data_root())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")


@stack.command("status")
def stack_status() -> None:
    """One line per service: up/down, address, version."""
    for line in local_stack.status(_data_root()):
        click.echo(line)


@click.command("status")
def status() -> None:
    """Services and topics at a glance."""
    for line in local_stack.status(_data_root()):
        click.echo(line)
