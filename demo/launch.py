"""Run one ``csync`` command in a child process of the demo: ``python -m demo.launch <command> [args]``.

The demo starts every pipeline process through this module instead of the ``csync`` script so that it does not
depend on which team's command the lead has already mounted on the ``csync`` group: a command mounted there is
run as is; one not mounted yet is run from its team's click object (the same code the mounted command will
run). The demo lists the stand-ins it used, so its summary names them.
"""

from __future__ import annotations

import importlib
import sys

import click

# command name → "module:attribute" of the team's click object, used while ``csync`` does not mount it.
STAND_INS: dict[str, str] = {
    "worker": "streams.cli:worker",
    "simulate": "producers.cli:simulate",
    "collector": "producers.cli:collector",
    "roster": "producers.cli:roster",
    "sink": "sinks.cli:sink",
    "clickhouse": "sinks.cli:clickhouse",
    "usage": "sinks.cli:usage",
    "lag": "ops.cli:lag",
    "teacher-api": "privacy.cli:teacher_api",
    "analyst-api": "analyst.cli:analyst_api",
}


def mounted() -> set[str]:
    """The command names the ``csync`` group mounts right now."""
    from csync.cli import main

    return set(main.commands)


def resolve(name: str) -> tuple[click.Command, str]:
    """The command to run for ``name`` and where it comes from (``csync``, ``module:attr`` or ``demo``)."""
    from csync.cli import main

    if name in main.commands:
        return main.commands[name], "csync"
    target = STAND_INS.get(name)
    if target is not None:
        module_name, attr = target.split(":")
        try:
            command = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            command = None
        if isinstance(command, click.Command):
            return command, target
    raise click.UsageError(f"no command {name!r}: neither csync nor {target} provides it")


def main(argv: list[str] | None = None) -> None:
    """Entry point: the first argument names the command, the rest are its arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m demo.launch <command> [args]")
    name, rest = args[0], args[1:]
    command, origin = resolve(name)
    print(f"[demo.launch] {name} {' '.join(rest)} (from {origin})", file=sys.stderr, flush=True)
    command.main(args=rest, prog_name=f"csync {name}")


if __name__ == "__main__":
    main()
