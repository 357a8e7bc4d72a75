"""``make bench``: every benchmark of ``bench/`` in sequence against one stack of its own, then one table.

Each benchmark is a script that prints ``RESULT key=value …`` lines (our figure beside a baseline measured in
the same run). This runner starts a Kafka broker and a redis-server on free ports in a temporary folder, runs
each script as a subprocess with that stack in its environment, parses its ``RESULT`` lines and prints one table:
figure, ours, baseline, ratio, target, verdict — and the machine's cores. A script that is missing, fails or
prints no figure is said to be so in the table; no number is ever made up. Scripts that do not take the median
of several runs themselves are run ``--repeat`` times (default 3) and the median of each value is taken.

The table also goes to ``bench/results/latest.md`` (git-ignored; ``latest-partial.md`` with ``--only``) with each script's output in
``bench/results/<key>-<script>.log``.

    .venv/bin/python bench/run_all.py [--only decode,sinks] [--repeat 3] [--timeout 1200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
RESULT_LINE = re.compile(r"^RESULT\s+(.*)$")
PAIR = re.compile(r"([A-Za-z0-9_.]+)=(-?[0-9.]+(?:e[+-]?\d+)?)")

Line = dict[str, float]


@dataclass(frozen=True)
class Script:
    """One benchmark script and whether it already reports a median of several runs."""

    key: str
    pattern: str
    """File name or glob under bench/ (``bench_worker*.py`` may match several scripts)."""
    medians_inside: bool
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Figure:
    """One row of the table: where its numbers come from and what it must reach."""

    title: str
    script: str
    ours: str
    """``RESULT`` key of our figure (a regular expression, matched whole)."""
    baseline: str | None
    """``RESULT`` key of the baseline, looked up on the line that holds ``ours`` first."""
    target: str
    passes: Callable[[float, float | None], bool]
    unit: str = "/s"
    ratio_key: str | None = None
    """Use this key's value as the ratio instead of ours / baseline (e.g. a latency ratio)."""


SCRIPTS = (
    Script("decode", "bench_decode.py", True),
    Script("producers", "bench_producers.py", False),
    Script("collectorprocs", "bench_collector_procs.py", True),
    Script("worker", "bench_worker.py", True),
    Script("memory", "bench_worker.py", False, ("--memory", "100000")),
    Script("scaling", "bench_scaling.py", True, ("--runs", "2")),
    Script("sinks", "bench_sinks.py", True),
    Script("presence", "bench_presence_latency.py", True),
    Script(
        "presence50k", "bench_presence_latency.py", True,
        ("--rate", "50000", "--workers", "2", "--students", "50000", "--sample", "250"),
    ),
    Script("peers", "bench_peers.py", True),
    Script("compression", "bench_compression.py", True),
)  # fmt: skip


def _ratio_at_least(x: float) -> Callable[[float, float | None], bool]:
    return lambda ours, baseline: baseline is not None and baseline > 0 and ours / baseline >= x


FIGURES = (
    Figure(
        "decode + validate + minimise vs orjson.loads",
        "decode", "decode_events_per_s", "baseline_events_per_s", "≥ 0.35×", _ratio_at_least(0.35),
    ),
    Figure(
        "simulator send rate vs raw aiokafka producer, same bytes",
        "producers", "simulator_events_per_s", "raw_events_per_s", "≥ 0.8×", _ratio_at_least(0.8),
    ),
    Figure(
        "collector accepted events/s (HTTP batches of 500) vs raw producer",
        "producers", "collector_events_per_s", "raw_events_per_s", "≥ 0.5×", _ratio_at_least(0.5),
    ),
    Figure(
        "collector, 2 processes on one port (SO_REUSEPORT) vs 1 process",
        "collectorprocs", "collector_2p_events_per_s", "collector_1p_events_per_s", "—",
        lambda _o, _b: True,
    ),
    Figure(
        "worker end to end, envelopes vs raw consume + orjson.loads",
        "worker", "envelopes_1w.ours_events_per_s", "envelopes_1w.baseline_events_per_s",
        "≥ 0.6×", _ratio_at_least(0.6),
    ),
    Figure(
        "single-event records, 1 worker process (vs raw loop)",
        "worker", "single_1w.ours_events_per_s", "single_1w.baseline_events_per_s", "≥ 0.35×",
        _ratio_at_least(0.35),
    ),
    Figure(
        "single-event records, 2 worker processes (vs raw loop)",
        "worker", "single_2w.ours_events_per_s", "single_2w.baseline_events_per_s",
        "≥ 10,000 ev/s", lambda ours, _b: ours >= 10_000,
    ),
    *(
        Figure(
            f"scaling: envelopes, {p} partitions, {w} worker process{'es' if w > 1 else ''} "
            "(vs raw loop, same topic)",
            "scaling", f"scaling_{p}p_{w}w.ours_events_per_s",
            f"scaling_{p}p_{w}w.baseline_events_per_s", "—", lambda _o, _b: True,
        )
        for p in (8, 16)
        for w in (1, 2)
    ),
    Figure(
        "ClickHouse sink rows/s vs raw insert_arrow",
        "sinks", "clickhouse_sink_rows_per_s", "clickhouse_raw_insert_arrow_rows_per_s", "≥ 0.8×",
        _ratio_at_least(0.8),
    ),
    Figure(
        "ClickHouse sink rows/s vs raw insert_arrow into the sink's own input table",
        "sinks", "clickhouse_sink_rows_per_s", "clickhouse_raw_same_input_rows_per_s", "≥ 0.85×",
        _ratio_at_least(0.85),
    ),
    Figure(
        "Redis sink writes/s vs raw pipelined HSET",
        "sinks", "redis_sink_changes_per_s", "redis_raw_pipelined_hset_per_s", "≥ 0.7×",
        _ratio_at_least(0.7),
    ),
    Figure(
        "presence latency event → Redis at 5k ev/s, p50 (baseline: Kafka alone)",
        "presence", "presence_p50_ms", "kafka_p50_ms", "—", lambda _o, _b: True, " ms",
    ),
    Figure(
        "presence latency p95",
        "presence", "presence_p95_ms", "kafka_p95_ms", "—", lambda _o, _b: True, " ms",
    ),
    Figure(
        "presence latency p99",
        "presence", "presence_p99_ms", "kafka_p99_ms", "p99 < 250 ms",
        lambda ours, _b: ours < 250, " ms",
    ),
    *(
        Figure(
            f"presence tail at 5k ev/s: p99 of one {stage} call",
            "presence", f"stage_{stage}_p99_ms", None, "—", lambda _o, _b: True, " ms",
        )
        for stage in ("poll", "process", "intent_ack", "emit_ack", "snapshot", "handle", "sink_flush")
    ),
    Figure(
        "presence latency p99 at 50k ev/s, 2 workers",
        "presence50k", "presence_p99_ms", "kafka_p99_ms", "p99 < 1,000 ms",
        lambda ours, _b: ours < 1000, " ms",
    ),
    Figure(
        "worker memory, whole RSS per 10k students held (100k simulated)",
        "memory", "memory.total_mb_per_10k_students", None, "≤ 20 MB",
        lambda ours, _b: ours <= 20, " MB",
    ),
    Figure(
        "activity topic, zstd vs lz4: events/s produced (acks=all)",
        "compression", "compression_zstd.produce_events_per_s",
        "compression_lz4.produce_events_per_s", "—", lambda _o, _b: True,
    ),
    Figure(
        "activity topic, zstd vs lz4: events/s consumed and parsed",
        "compression", "compression_zstd.consume_events_per_s",
        "compression_lz4.consume_events_per_s", "—", lambda _o, _b: True,
    ),
    Figure(
        "activity topic, zstd vs lz4: compressed bytes, % of raw",
        "compression", "compression_zstd.bytes_pct", "compression_lz4.bytes_pct", "—",
        lambda _o, _b: True, " %",
    ),
    Figure(
        "peers: our worker vs faust-streaming agents + Tables, same rules, same topic",
        "peers", "peer_faust.ours_events_per_s", "peer_faust.baseline_events_per_s", "≥ 20×",
        _ratio_at_least(20),
    ),
    Figure(
        "peers: our worker vs Quix Streams stateful StreamingDataFrame, same rules, same topic",
        "peers", "peer_quix.ours_events_per_s", "peer_quix.baseline_events_per_s", "≥ 3×",
        _ratio_at_least(3),
    ),
)  # fmt: skip


@dataclass
class Outcome:
    """What running one script gave: its ``RESULT`` lines (medians over repeats) or why there are none."""

    lines: list[Line] = field(default_factory=list)
    problem: str = ""
    runs: int = 0
    seconds: float = 0.0


def parse_results(output: str) -> list[Line]:
    """Every ``RESULT`` line of ``output`` as ``{key: value}`` (non-numeric values are ignored)."""
    lines = []
    for raw in output.splitlines():
        match = RESULT_LINE.match(raw.strip())
        if match:
            # ``name=X`` (a word) names the line: its keys become ``X.key``.
            name = re.search(r"(?:^|\s)name=(\S+)", match.group(1))
            prefix = f"{name.group(1)}." if name else ""
            lines.append({prefix + k: float(v) for k, v in PAIR.findall(match.group(1))})
    return lines


def median_lines(runs: list[list[Line]]) -> list[Line]:
    """Line by line, key by key, the median over runs (runs that printed the same lines)."""
    if not runs:
        return []
    shape = [sorted(line) for line in runs[0]]
    usable = [r for r in runs if [sorted(line) for line in r] == shape]
    return [
        {key: statistics.median(r[i][key] for r in usable) for key in runs[0][i]}
        for i in range(len(shape))
    ]


def find(lines: list[Line], pattern: str, near: Line | None = None) -> tuple[float, Line] | None:
    """The value of the first key matching ``pattern`` (whole), preferring the line ``near``."""
    regex = re.compile(pattern)
    for line in ([near] if near else []) + lines:
        for key, value in line.items():
            if regex.fullmatch(key):
                return value, line
    return None


def run_script(
    path: Path, args: tuple[str, ...], env: dict[str, str], repeat: int, timeout_s: float, log: Path
) -> Outcome:
    """Run ``path args`` ``repeat`` times (stop at the first failure); its output goes to ``log``."""
    outcome = Outcome()
    all_runs: list[list[Line]] = []
    started = time.monotonic()
    with log.open("w") as out:
        for n in range(repeat):
            out.write(f"===== run {n + 1}/{repeat}: {path.name}\n")
            out.flush()
            try:
                proc = subprocess.run(
                    [sys.executable, str(path), *args],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                out.write(str(exc.stdout or "") + str(exc.stderr or ""))
                outcome.problem = f"timed out after {timeout_s:.0f} s"
                break
            out.write(proc.stdout + proc.stderr)
            out.flush()
            lines = parse_results(proc.stdout)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
                outcome.problem = f"exit {proc.returncode}: {last}"
                break
            if not lines:
                outcome.problem = "printed no RESULT line"
                break
            all_runs.append(lines)
    outcome.runs = len(all_runs)
    outcome.seconds = time.monotonic() - started
    if not outcome.problem:
        outcome.lines = median_lines(all_runs)
    return outcome


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.1f}{unit}"


def table(outcomes: dict[str, Outcome], cores: int) -> list[str]:
    """The markdown table of every figure (never a made-up number)."""
    rows = [
        f"Machine: {cores} cores ({platform.machine()}, Python {platform.python_version()}), "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Baselines measured in the same run.",
        "",
        "| figure | ours | baseline | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for fig in FIGURES:
        outcome = outcomes.get(fig.script)
        if outcome is None:
            rows.append(f"| {fig.title} | — | — | — | {fig.target} | not run |")
            continue
        if outcome.problem:
            rows.append(
                f"| {fig.title} | — | — | — | {fig.target} | {fig.script}: {outcome.problem} |"
            )
            continue
        ours = find(outcome.lines, fig.ours)
        if ours is None:
            rows.append(
                f"| {fig.title} | — | — | — | {fig.target} | not reported by {fig.script} |"
            )
            continue
        base = find(outcome.lines, fig.baseline, near=ours[1]) if fig.baseline else None
        baseline = base[0] if base else None
        ratio = (
            f"{ours[0] / baseline:.2f}×" if baseline and fig.unit == "/s" else
            (f"{ours[0] / baseline:.1f}× the baseline" if baseline else "—")
        )  # fmt: skip
        verdict = "meets" if fig.passes(ours[0], baseline) else "MISSES"
        if fig.target == "—":
            verdict = "(shown for context)"
        elif fig.baseline and baseline is None:
            verdict = "no baseline reported"
        rows.append(
            f"| {fig.title} | {_fmt(ours[0], fig.unit)} | {_fmt(baseline, fig.unit)} | {ratio} "
            f"| {fig.target} | {verdict} |"
        )
    rows.append("")
    for key, outcome in outcomes.items():
        runs = "median inside the script" if outcome.runs == 1 else f"median of {outcome.runs} runs"
        state = outcome.problem or "ok"
        rows.append(f"- `{key}`: {state}; {runs}; {outcome.seconds:.0f} s")
    return rows


def start_stack() -> tuple[Path, dict[str, str]]:
    """A private Kafka + Redis on free ports; the environment that points the benchmarks at it."""
    sys.path.insert(0, str(ROOT))
    from csync import stack as local_stack

    root = Path(tempfile.mkdtemp(prefix="csync-bench-"))
    running = local_stack.up(
        root,
        kafka_port=local_stack.free_port(),
        redis_port=local_stack.free_port(),
        persist_redis=False,
    )
    env = {
        **os.environ,
        **running.env(),
        "DATA_DIR": str(root),
        "CLICKHOUSE_URL": f"chdb://{root / 'chdb'}",
        "PYTHONUNBUFFERED": "1",
    }
    return root, env


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--only",
        default="",
        help="Comma-separated script keys: " + ", ".join(s.key for s in SCRIPTS),
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="Runs of scripts that do not take medians."
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="Seconds per script run.")
    args = parser.parse_args()
    wanted = {k for k in args.only.split(",") if k}
    RESULTS.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 0
    root, env = start_stack()
    outcomes: dict[str, Outcome] = {}
    try:
        for script in SCRIPTS:
            if wanted and script.key not in wanted:
                continue
            paths = sorted(BENCH.glob(script.pattern))
            if not paths:
                outcomes[script.key] = Outcome(problem=f"missing: no bench/{script.pattern}")
                print(f"[bench] {script.key}: missing (bench/{script.pattern})", flush=True)
                continue
            merged = Outcome()
            for path in paths:
                print(f"[bench] {path.name} …", flush=True)
                repeat = 1 if script.medians_inside else args.repeat
                log = RESULTS / f"{script.key}-{path.stem}.log"
                result = run_script(path, script.args, env, repeat, args.timeout, log)
                print(
                    f"[bench] {path.name}: {result.problem or 'ok'} ({result.seconds:.0f} s)",
                    flush=True,
                )
                merged.lines += result.lines
                merged.runs = max(merged.runs, result.runs)
                merged.seconds += result.seconds
                if result.problem:
                    merged.problem = "; ".join(
                        filter(None, [merged.problem, f"{path.name} {result.problem}"])
                    )
            if merged.lines and merged.problem:
                # Some scripts of the group worked: their figures count, the failure is listed below.
                outcomes[script.key] = Outcome(merged.lines, "", merged.runs, merged.seconds)
                outcomes[f"{script.key} (failures)"] = Outcome(problem=merged.problem)
            else:
                outcomes[script.key] = merged
    finally:
        from csync import stack as local_stack

        local_stack.down(root)
    rows = table(outcomes, cores)
    text = (
        "# Benchmarks (make bench)\n\n"
        + "\n".join(rows)
        + "\n\nSee docs/benchmarks.md for what each figure means.\n"
    )
    # A partial run (--only) does not replace the last full table.
    written = RESULTS / ("latest-partial.md" if wanted else "latest.md")
    written.write_text(text)
    print()
    print("\n".join(rows))
    print(f"\nwritten: {written}")


if __name__ == "__main__":
    main()
