"""``csync worker``: the click command the csync group mounts (``main.add_command(worker)``)."""

from __future__ import annotations

import sys

import click


@click.command("worker")
@click.option("--loglevel", "-l", default="info", help="faust log level")
def worker(loglevel: str) -> None:
    """Run one stream worker (start N of them, each with its own WORKER_WEB_PORT, to scale out)."""
    from streams.app import app

    sys.argv = ["csync-worker", "worker", "--loglevel", loglevel]
    app.main()
