"""The demo's live terminal dashboard: a pure function from a :class:`Snapshot` to a rich renderable.

The orchestrator gathers a snapshot every second (:mod:`demo.probe`) and either hands the renderable to
``rich.live.Live`` or, headless, renders it to text (:func:`render_text`) for a file and the tests.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from demo.probe import GroupLag, UsageTotals

STATUS_STYLE = {"OK": "green", "WARN": "yellow", "STALL": "red", "STOP": "red", "ERR": "red"}


@dataclass(frozen=True)
class ProcessRow:
    """One pipeline process on the dashboard."""

    name: str
    pid: int
    port: int | None
    alive: bool
    log: str


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame of the dashboard shows; ``None`` = not known (yet)."""

    elapsed_s: float
    total_s: float
    sim_ms: int | None
    speed: float
    phase: str
    rates: dict[str, float | None]
    """events/s by stage: produced, collector, processed, presence writes, usage rows."""
    counts: dict[str, float | None]
    lag: list[GroupLag]
    dlq: dict[str, float]
    online: dict[str, int] | None
    usage: UsageTotals | None
    recent: dict[str, float]
    """Seconds each app/site gained in the public view over the last 20 s of wall time."""
    class_id: str
    roster: list[dict[str, Any]] | None
    processes: list[ProcessRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}/s"


def _fmt_count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h"


def header(snap: Snapshot) -> Text:
    """One line: phase, wall progress, and the simulated school-day clock."""
    sim = (
        dt.datetime.fromtimestamp(snap.sim_ms / 1000, dt.UTC).strftime("%H:%M UTC")
        if snap.sim_ms
        else "--:--"
    )
    up = sum(p.alive for p in snap.processes)
    text = Text()
    text.append("ClassroomSync demo", style="bold cyan")
    text.append(f"  {snap.phase}  ")
    text.append(f"{snap.elapsed_s:4.0f}s / {snap.total_s:.0f}s wall", style="bold")
    text.append(f"  school-day clock {sim} (×{snap.speed:.0f})  processes up {up}/")
    text.append(f"{len(snap.processes)}")
    return text


def throughput_table(snap: Snapshot) -> Table:
    table = Table(title="events/s in → out", expand=True, title_style="bold")
    table.add_column("stage")
    table.add_column("rate", justify="right")
    table.add_column("total", justify="right")
    for label in ("produced", "collector", "processed", "presence writes", "usage rows"):
        table.add_row(label, _fmt_rate(snap.rates.get(label)), _fmt_count(snap.counts.get(label)))
    return table


def lag_table(lag: Sequence[GroupLag]) -> Table:
    table = Table(title="consumer lag", expand=True, title_style="bold")
    table.add_column("group")
    table.add_column("offsets", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("status")
    for row in lag:
        style = STATUS_STYLE.get(row.status, "")
        table.add_row(
            row.group.removeprefix("csync-"),
            f"{row.offsets:,}",
            f"{row.seconds:.1f}",
            Text(row.status, style=style),
        )
    if not lag:
        table.add_row("(waiting for the lag monitor)", "", "", "")
    return table


def dlq_table(dlq: dict[str, float]) -> Table:
    table = Table(title="DLQ by reason", expand=True, title_style="bold")
    table.add_column("reason")
    table.add_column("records", justify="right")
    for reason, n in sorted(dlq.items(), key=lambda kv: -kv[1]):
        table.add_row(reason, f"{n:,.0f}")
    if not dlq:
        table.add_row("(none yet)", "0")
    return table


def online_table(online: dict[str, int] | None) -> Table:
    table = Table(title="students online", expand=True, title_style="bold")
    table.add_column("district")
    table.add_column("online", justify="right")
    for district, n in sorted((online or {}).items()):
        table.add_row(district, f"{n:,}")
    if online is None:
        table.add_row("(Redis not answering)", "")
    elif not online:
        table.add_row("(nobody yet)", "0")
    return table


def top_table(
    title: str, totals: dict[str, tuple[float, int]], recent: dict[str, float], n: int = 8
) -> Table:
    """Top ``n`` by time today, with the time attributed over the last seconds of the run."""
    table = Table(title=title, expand=True, title_style="bold")
    table.add_column("name", overflow="ellipsis", no_wrap=True)
    table.add_column("today", justify="right")
    table.add_column("students", justify="right")
    table.add_column("last 20 s", justify="right")
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])[:n]
    for name, (seconds, students) in ranked:
        now = recent.get(name, 0.0)
        table.add_row(name, _hours(seconds), f"{students:,}", f"+{now / 60:,.0f} min")
    if not ranked:
        table.add_row("(no cell of ≥K students yet)", "", "", "")
    return table


def roster_table(class_id: str, roster: list[dict[str, Any]] | None, n: int = 12) -> Table:
    """The class as its teacher sees it through the teacher API: name, online, sub-app."""
    table = Table(title=f"class {class_id} — teacher view", expand=True, title_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("online")
    table.add_column("sub-app", overflow="ellipsis", no_wrap=True)
    for row in (roster or [])[:n]:
        online = bool(row.get("online"))
        table.add_row(
            str(row.get("name") or "(no roster name)"),
            Text("●  online", style="green") if online else Text("○  offline", style="dim"),
            str(row.get("sub_app") or ""),
        )
    if roster is None:
        table.add_row("(teacher API not answering)", "", "")
    elif len(roster) > n:
        table.add_row(f"… {len(roster) - n} more", "", "")
    return table


def process_table(processes: Sequence[ProcessRow]) -> Table:
    table = Table(title="processes (logs in .local/demo/logs)", expand=True, title_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("pid", justify="right")
    table.add_column("port", justify="right")
    table.add_column("state")
    for p in processes:
        state = Text("up", style="green") if p.alive else Text("exited", style="yellow")
        table.add_row(p.name, str(p.pid), str(p.port or ""), state)
    return table


def _row(*cells: RenderableType) -> Table:
    grid = Table.grid(expand=True, padding=(0, 1))
    for _ in cells:
        grid.add_column(ratio=1)
    grid.add_row(*cells)
    return grid


def render(snap: Snapshot) -> RenderableType:
    """The whole dashboard for one snapshot."""
    usage = snap.usage or UsageTotals()
    apps = {k: v for k, v in usage.apps.items() if k != "web"}
    parts: list[RenderableType] = [
        header(snap),
        _row(throughput_table(snap), lag_table(snap.lag), dlq_table(snap.dlq)),
        _row(
            online_table(snap.online),
            top_table("top apps (analysts' view)", apps, snap.recent),
            top_table("top sites (analysts' view)", usage.sites, snap.recent),
        ),
        _row(roster_table(snap.class_id, snap.roster), process_table(snap.processes)),
    ]
    if snap.notes:
        parts.append(Text("\n".join(snap.notes[-3:]), style="yellow"))
    return Panel(Group(*parts), border_style="cyan")


def render_text(snap: Snapshot, width: int = 160) -> str:
    """The dashboard as plain text (headless runs, tests)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    console.print(render(snap))
    return buffer.getvalue()
