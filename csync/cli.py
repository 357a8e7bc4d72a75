"""``csync``: the one command-line entry point of ClassroomSync.

A flat table of the commands each package provides; settings come from :mod:`csync.config`, which every
package's ``cli`` module imports itself, so none of them imports this module.
"""

from __future__ import annotations

import click

from analyst.cli import UsageGroup, analyst_api, analyst_token
from csync.stack_cli import stack, status
from csync.topics_cli import topics
from demo.cli import demo
from ops.cli import lag
from ops.dlq_cli import dlq
from ops.probe_cli import probe
from ops.rebuild_cli import usage_rebuild
from privacy.cli import audit, purge, retention, teacher_api, teacher_token
from producers.cli import collector, collector_token, roster, simulate
from sinks.cli import clickhouse, sink, usage
from streams.cli import worker

COMMANDS: tuple[click.Command, ...] = (
    stack,  # csync: the local stack of real services
    status,
    topics,
    simulate,  # producers: the ways in
    collector,
    collector_token,
    roster,
    worker,  # streams: the stream worker
    sink,  # sinks: presence → Redis, usage → ClickHouse, the analysts' read path
    clickhouse,
    UsageGroup(usage, usage_rebuild),  # the analysts' read path; `usage export`, `usage rebuild`
    analyst_api,  # analyst: the analysts' API and dashboard, their tokens
    analyst_token,
    lag,  # ops: consumer lag, the DLQ, the end-to-end probe
    dlq,
    probe,
    purge,  # privacy: disposal, retention, the teacher API, audit
    retention,
    teacher_api,
    teacher_token,
    audit,
    demo,  # demo: the whole pipeline, live
)

main = click.Group(
    "csync",
    commands=COMMANDS,
    help="ClassroomSync: live presence for teachers and de-identified usage rollups for analysts.",
)


if __name__ == "__main__":
    main()
