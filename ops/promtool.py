"""Run Prometheus's ``promtool`` on our artefacts: rule files, rule unit tests, and any ``/metrics`` output.

Tests of every team can call :func:`check_metrics_text` on what their process serves; it returns promtool's
complaints (empty = clean), so a test asserts ``== []`` and shows the lint lines when it fails.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PROMTOOL_CANDIDATES = ("/usr/bin/promtool",)


class PromtoolMissingError(RuntimeError):
    """promtool is not installed (Debian: ``apt-get install prometheus``; .ci/run installs it)."""


def promtool_binary() -> str:
    """Path of promtool; raises :class:`PromtoolMissingError` when absent."""
    found = shutil.which("promtool")
    if found:
        return found
    for candidate in PROMTOOL_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise PromtoolMissingError("promtool is missing: apt-get install prometheus")


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``promtool args…`` and return the completed process (never raises on a non-zero exit)."""
    return subprocess.run(  # noqa: S603 - fixed binary, our own arguments
        [promtool_binary(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_metrics_text(text: str) -> list[str]:
    """promtool's lint problems with a ``/metrics`` body (``promtool check metrics``); [] when clean."""
    result = run_promtool("check", "metrics", stdin=text)
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    if result.returncode == 0:
        return []
    return lines or [f"promtool exited with {result.returncode}"]
