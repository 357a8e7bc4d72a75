"""``csync worker``: the click command the csync group mounts (``main.add_command(worker)``)."""

from __future__ import annotations

import asyncio
import sys

import click


@click.command("worker")
@click.option("--loglevel", "-l", default="info", help="faust log level")
def worker(loglevel: str) -> None:
    """Run one stream worker (start N of them, each with its own WORKER_WEB_PORT, to scale out)."""
    from csync.config import settings_from_env
    from csync.kafka_client import KafkaSecurityError
    from csync.topics import TopicsNotProvisioned, check_topics, worker_topic_specs
    from streams.app import app

    settings = settings_from_env()  # what the faust app will read (streams.app)
    try:
        asyncio.run(check_topics(settings, worker_topic_specs(settings)))
    except (TopicsNotProvisioned, KafkaSecurityError) as exc:
        raise click.ClickException(str(exc)) from exc

    sys.argv = ["csync-worker", "worker", "--loglevel", loglevel]
    app.main()
