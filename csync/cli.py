"""``csync``: the one command-line entry point of ClassroomSync."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from csync import stack as local_stack
from csync.settings import Settings, SettingsError


def load_settings() -> Settings:
    """Settings from the environment, with the running local stack's addresses as defaults."""
    try:
        base = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    running = local_stack.Stack.load(Path(base.data_dir))
    if running is None:
        return base
    defaults = {k.lower(): v for k, v in running.env().items() if k not in os.environ}
    return base.replace(**defaults)


@click.group()
def main() -> None:
    """ClassroomSync: live presence for teachers and de-identified usage rollups for analysts."""


@main.group()
def stack() -> None:
    """The local stack: real Kafka 4 (KRaft), redis-server and the chDB folder."""


@stack.command("up")
@click.option("--kafka-port", type=int, default=lambda: int(os.environ.get("KAFKA_PORT", "9092")))
@click.option("--redis-port", type=int, default=lambda: int(os.environ.get("REDIS_PORT", "6379")))
def stack_up(kafka_port: int, redis_port: int) -> None:
    """Start Kafka and Redis (idempotent: says so when they already run)."""
    data_root = Path(Settings.from_env().data_dir)
    try:
        running = local_stack.up(data_root, kafka_port=kafka_port, redis_port=redis_port)
    except local_stack.StackError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in local_stack.status(data_root):
        click.echo(line)
    click.echo(f"# export {' '.join(f'{k}={v}' for k, v in running.env().items())}")


@stack.command("down")
def stack_down() -> None:
    """Stop what ``stack up`` started; data stays (``make clean`` removes it)."""
    stopped = local_stack.down(Path(Settings.from_env().data_dir))
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")


@stack.command("status")
def stack_status() -> None:
    """One line per service: up/down, address, version."""
    for line in local_stack.status(Path(Settings.from_env().data_dir)):
        click.echo(line)


@main.command("status")
def status() -> None:
    """Services and topics at a glance."""
    for line in local_stack.status(Path(Settings.from_env().data_dir)):
        click.echo(line)


@main.group()
def topics() -> None:
    """Kafka topics of the contract and the internal ones."""


@topics.command("create")
@click.option(
    "--alter",
    is_flag=True,
    help="Also set the retention/compaction configs of existing topics that differ from settings.",
)
def topics_create(alter: bool) -> None:
    """Create missing topics with partitions/retention/compaction from settings; report differences."""
    from csync.topics import apply_topic_configs, create_topics

    settings = load_settings()
    try:
        reports = asyncio.run(create_topics(settings))
    except Exception as exc:  # the admin client's errors are many; say which broker failed
        raise click.ClickException(
            f"could not create topics on {settings.kafka_bootstrap}: {exc}"
        ) from exc
    differing = [r for r in reports if r.action == "differs"]
    for report in reports:
        click.echo(f"{report.action:8} {report.name}  {report.detail}")
    if differing and alter:
        asyncio.run(apply_topic_configs(settings, [r.name for r in differing]))
        again = {r.name: r for r in asyncio.run(create_topics(settings))}
        differing = [again[r.name] for r in differing if again[r.name].action == "differs"]
        for report in differing:
            click.echo(
                f"still differs: {report.name}  {report.detail} (partitions are never changed)"
            )
        if not differing:
            click.echo("configs applied")
    if differing:
        click.echo(
            "some topics exist with other settings: `csync topics create --alter` applies the "
            "configs; partition counts can only be changed by hand",
            err=True,
        )
        sys.exit(1)


from ops.cli import lag as lag_command  # noqa: E402 - each team's commands are mounted here

main.add_command(lag_command)

from ops.dlq_cli import dlq as dlq_command  # noqa: E402 - csync dlq stats|show|redrive

main.add_command(dlq_command)

from ops.probe_cli import probe as probe_command  # noqa: E402 - csync probe (end to end)

main.add_command(probe_command)

from ops.rebuild_cli import usage_rebuild  # noqa: E402 - csync usage-rebuild --from --to

main.add_command(usage_rebuild)

from producers.cli import collector, collector_token, roster, simulate  # noqa: E402
from sinks.cli import clickhouse, sink, usage  # noqa: E402

for _producer_command in (simulate, collector, collector_token, roster):
    main.add_command(_producer_command)

main.add_command(clickhouse)
main.add_command(sink)
main.add_command(usage)

from streams.cli import worker  # noqa: E402 - the stream worker (faust shell)

main.add_command(worker)

from privacy.cli import COMMANDS as privacy_commands  # noqa: E402

for _privacy_command in privacy_commands:
    main.add_command(_privacy_command)

from demo.cli import demo as demo_command  # noqa: E402 - make demo: the whole pipeline, live

main.add_command(demo_command)


if __name__ == "__main__":
    main()
