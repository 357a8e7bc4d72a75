"""How tests, benchmarks and tools start a stream worker: the same ``csync worker`` as production.

The worker has one process shell, the faust app of :mod:`streams.app`, started by the venv's
``csync worker``; its settings come from the environment (:meth:`Settings.to_env`) and each worker
needs its own ``WORKER_WEB_PORT``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from csync.settings import Settings


def worker_command(loglevel: str = "info") -> list[str]:
    """``csync worker`` of the running interpreter's environment (the venv's ``bin/csync``)."""
    return [str(Path(sys.executable).with_name("csync")), "worker", "--loglevel", loglevel]


def worker_env(settings: Settings, web_port: int, **extra: str) -> dict[str, str]:
    """The environment of a worker running with exactly ``settings`` on ``web_port``; ``extra``
    names more variables (lower case, like settings fields)."""
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    env["WORKER_WEB_PORT"] = str(web_port)
    env.update({k.upper(): v for k, v in extra.items()})
    return env
