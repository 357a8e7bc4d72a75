"""Run one stream worker without faust's CLI: ``python -m streams.worker`` (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import logging

from csync.settings import Settings
from streams.engine import Engine


async def run_worker(settings: Settings) -> None:
    """Start an :class:`Engine`, run it until cancelled or it fails, then stop it cleanly."""
    engine = Engine(settings)
    await engine.start()
    try:
        await engine.run()
    finally:
        await engine.stop()


def main() -> None:
    """Entry point of ``python -m streams.worker``: settings from the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker(Settings.from_env()))


if __name__ == "__main__":
    main()
