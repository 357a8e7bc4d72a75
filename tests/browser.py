"""Headless Chromium for browser tests: Debian's ``chromium`` driven by Playwright (no browser download).

Playwright's Python package talks to the browser over the DevTools protocol, so it drives the system
Chromium through ``executable_path``; its own browser builds are never fetched. ``.ci/run`` installs the
``chromium`` package when it is missing. Screenshots and other files a test wants a human to look at go to
:data:`ARTIFACTS` (``.local/test-artifacts/``, ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".local" / "test-artifacts"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# Root in a container has no user namespaces for Chromium's sandbox; /dev/shm is small there.
ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def chromium_path() -> str:
    """``CSYNC_CHROMIUM`` or the first Chromium on ``PATH``; fails the test with the fix if none."""
    explicit = os.environ.get("CSYNC_CHROMIUM")
    found = explicit or next((p for c in CANDIDATES if (p := shutil.which(c))), None)
    if not found:
        pytest.fail("no Chromium: apt-get install chromium (.ci/run does it)", pytrace=False)
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for the duration of the block (closed even when the block fails)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def artifact(name: str) -> Path:
    """A path under :data:`ARTIFACTS` for a file a test writes for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
