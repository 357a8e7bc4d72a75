"""Settings for a command-line process: parsed once from the environment, bad values as usage errors.

Every ``cli`` module of the packages takes its settings from here, and :mod:`csync.cli` only mounts their
commands, so no package's commands import the ``csync`` group (no import circle between them).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from csync import stack as local_stack
from csync.settings import Settings, SettingsError


def settings_from_env() -> Settings:
    """Settings from the environment alone; a value that cannot be used is a usage error naming it."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def load_settings() -> Settings:
    """Settings from the environment, with the running local stack's addresses as defaults."""
    base = settings_from_env()
    running = local_stack.Stack.load(Path(base.data_dir))
    if running is None:
        return base
    # The stack's variables as if set in the environment (parsed like them: REPLICATION_FACTOR is an int).
    try:
        return Settings.from_env(env={**running.env(), **os.environ})
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
