"""The demo's child processes: each in its own process group with its own log file, recorded in a pid file.

Whatever ends the demo — the end of the run, Ctrl-C, SIGTERM/SIGHUP, an exception, or the interpreter exiting
— :meth:`Supervisor.stop_all` runs (it is idempotent and registered with ``atexit``): SIGTERM to every group,
then SIGKILL to what is left after a grace period. A demo killed with SIGKILL cannot clean up, so the next demo
first sweeps the groups recorded in the pid file by the previous one (:func:`sweep`), checking each pid's
command line so a recycled pid of somebody else's process is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "demo.launch"  # every child's command line contains it (python -m demo.launch …)


@dataclass
class Child:
    """One started process: its name, pid (= its process group id) and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(pid_file: Path) -> list[str]:
    """Stop the process groups a previous demo recorded and left behind; return their names."""
    try:
        recorded = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return []
    swept = []
    for entry in recorded.get("children", []):
        pid = int(entry["pid"])
        if MARKER in _cmdline(pid):
            _kill_group(pid, grace_s=5.0)
            swept.append(f"{entry['name']} (pid {pid})")
    pid_file.unlink(missing_ok=True)
    return swept


def _kill_group(pgid: int, grace_s: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(pgid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Supervisor:
    """Starts children of the demo and guarantees they are stopped (see the module docstring)."""

    def __init__(self, log_dir: Path, pid_file: Path, grace_s: float = 12.0) -> None:
        self.log_dir = log_dir
        self.pid_file = pid_file
        self.grace_s = grace_s
        self.children: list[Child] = []
        self.started: list[int] = []
        """Every pid this supervisor ever started (for checks that nothing is left)."""
        log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop_all)

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> Child:
        """Start ``python -m demo.launch <args>`` in a new session, output to ``<log_dir>/<name>.log``."""
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", MARKER, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        self.started.append(proc.pid)
        self._record()
        return child

    def run(self, name: str, args: list[str], env: Mapping[str, str], timeout_s: float) -> int:
        """Start a child and wait for it (a setup step); stop it if it takes longer than ``timeout_s``."""
        child = self.start(name, args, env)
        try:
            return child.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(child.pid, grace_s=3.0)
            return -1
        finally:
            self.children.remove(child)
            self._record()

    def _record(self) -> None:
        entries = [{"name": c.name, "pid": c.pid, "log": str(c.log)} for c in self.children]
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"orchestrator": os.getpid(), "children": entries}, indent=1))
        tmp.replace(self.pid_file)

    def stop(self, child: Child) -> None:
        """Stop one child's process group (SIGTERM, then SIGKILL after the grace period)."""
        _kill_group(child.pid, self.grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=1)
        if child in self.children:
            self.children.remove(child)
        self._record()

    def stop_all(self) -> list[str]:
        """Stop every child still running: SIGTERM to all groups at once, SIGKILL after the grace period."""
        stopped = []
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in reversed(self.children):
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=remaining)
            # The leader may be gone while others of its group still run: kill the group either way.
            if _group_alive(child.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=5)
            stopped.append(child.name)
        self.children.clear()
        self.pid_file.unlink(missing_ok=True)
        return stopped


def raise_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into ``KeyboardInterrupt`` so the demo's ``finally`` blocks run (SIGINT already
    is); return the previous handlers for :func:`restore_signals`."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}


def restore_signals(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`raise_on_signals` replaced."""
    for sig, old in previous.items():
        signal.signal(sig, old)
