"""``csync topics create [--alter]``: the contract's and the internal Kafka topics, as settings say."""

from __future__ import annotations

import asyncio
import sys

import click

from csync.config import load_settings


@click.group("topics")
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
