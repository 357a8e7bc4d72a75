"""Our worker beside the same rules in peer stream processors, each reading the same topic to its end.

Peers (``bench/peers/``): faust-streaming (one agent, state in Tables) and Quix Streams (a
``StreamingDataFrame`` with a stateful ``apply``). Every peer is first run on a small input and its final
presence and usage cells are compared with :func:`producers.truth.ground_truth`; a peer that computes
something else stops the benchmark. Then, on one pre-loaded topic of simulator envelopes (8 partitions,
1 % invalid events, duplicates, reordering), each is timed ``--runs`` times from a fresh consumer group:
ours is ``csync worker`` from ``/readyz`` to the last event counted on ``/metrics`` (as
``bench_worker.py``); a peer from its first record to its last (its start-up is left out, which favours
it). Prints, medians of the runs::

    RESULT name=peer_faust ours_events_per_s=... baseline_events_per_s=... ratio=...

Quix Streams pins a pydantic older than the project's, so it runs from a virtual environment of its own,
``.local/peer-quix``, which this script creates from ``bench/peers/requirements-quix.txt`` when missing.

    .venv/bin/python bench/bench_peers.py [--events 400000] [--verify-events 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_stack import bench_kafka  # noqa: E402
from bench.bench_worker import load, ours, run_settings, sim_items  # noqa: E402
from csync.settings import Settings  # noqa: E402
from csync.topics import create_topics, worker_topic_specs  # noqa: E402
from producers.simulator_model import SimItem, valid_events  # noqa: E402
from producers.truth import TruthParams, ground_truth  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / "peers"
QUIX_VENV = ROOT / ".local" / "peer-quix"


def quix_python() -> Path:
    """The Python of the Quix Streams environment, created on first use."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import quixstreams, orjson"], capture_output=True)
    if check.returncode != 0:
        reqs = PEERS / "requirements-quix.txt"
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(reqs)], check=True)
    return python


def peer_command(peer: str) -> list[str]:
    if peer == "faust":
        return [sys.executable, str(PEERS / "faust_peer.py")]
    return [str(quix_python()), str(PEERS / "quix_peer.py")]


async def last_offsets(s: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(s.partitions)]
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: o - 1 for tp, o in end.items() if o > 0}


def run_peer(peer: str, s: Settings, topic: str, offsets: dict[int, int], tmp: Path,
             verify: bool) -> dict[str, Any]:  # fmt: skip
    """Run one peer over ``topic`` to its end in a fresh consumer group; its result document."""
    run = uuid.uuid4().hex[:8]
    result = tmp / f"{peer}-{run}.json"
    spec = {
        "app_id": f"peer-{peer}-{run}", "bootstrap": s.kafka_bootstrap, "topic": topic,
        "partitions": s.partitions, "last_offsets": {str(p): o for p, o in offsets.items()},
        "verify": verify,
        "lateness_ms": s.allowed_lateness_s * 1000, "gap_ms": s.max_gap_s * 1000,
        "timeout_ms": s.presence_timeout_s * 1000, "result": str(result),
        "state_dir": str(tmp / f"state-{run}"),
    }  # fmt: skip
    spec_path = tmp / f"{peer}-{run}-spec.json"
    spec_path.write_bytes(orjson.dumps(spec))
    log = tmp / f"{peer}-{run}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen([*peer_command(peer), str(spec_path)], cwd=tmp, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 900
            while not result.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    if not result.exists():
        raise RuntimeError(f"{peer} wrote no result; see {log}")
    doc: dict[str, Any] = orjson.loads(result.read_bytes())
    return doc


def check_against_truth(peer: str, doc: dict[str, Any], items: list[SimItem], s: Settings) -> None:
    """Raise unless the peer's final presence and usage cells equal the truth's."""
    truth = ground_truth(valid_events(items), TruthParams.from_settings(s), doc["now_ms"])
    want_presence = {
        f"{d}:{st}": [p.online, p.app, p.sub_app, p.ts] for (d, st), p in truth.presence.items()
    }
    want_cells = {
        f"{m}|{a}|{sa}": [c.active_ms, len(c.students)] for (m, a, sa), c in truth.cells.items()
    }
    bad_presence = sum(doc["presence"].get(k) != v for k, v in want_presence.items())
    bad_presence += len(set(doc["presence"]) - set(want_presence))
    bad_cells = sum(doc["cells"].get(k) != v for k, v in want_cells.items())
    bad_cells += len(set(doc["cells"]) - set(want_cells))
    print(
        f"verify {peer}: {len(want_presence)} students, {len(want_cells)} cells; "
        f"presence mismatches {bad_presence}, cell mismatches {bad_cells}",
        flush=True,
    )
    if bad_presence or bad_cells:
        raise SystemExit(f"{peer} does not compute the rules: not timed")


async def loaded_topic(
    base: Settings, items: list[SimItem], name: str
) -> tuple[str, dict[int, int]]:
    topic = f"peers-{uuid.uuid4().hex[:6]}-{name}"
    s = run_settings(base, topic)
    await create_topics(s, worker_topic_specs(s))
    await load(s, topic, items, single=False)
    return topic, await last_offsets(s, topic)


async def _main(base: Settings, args: argparse.Namespace, tmp: Path) -> None:
    peers = args.peers.split(",")
    small = sim_items(args.verify_events, 200)
    topic, offsets = await loaded_topic(base, small, "verify")
    for peer in peers:
        doc = await asyncio.to_thread(run_peer, peer, base, topic, offsets, tmp, True)
        check_against_truth(peer, doc, small, base)
    items = sim_items(args.events, args.students)
    topic, offsets = await loaded_topic(base, items, "timed")
    print(f"loaded {len(items):,} events into {topic}", flush=True)
    rates: dict[str, list[float]] = {"ours": [], **{p: [] for p in peers}}
    for _ in range(args.runs):  # interleaved: the machine's load moves all alike
        rs = run_settings(base, topic)
        await create_topics(rs, worker_topic_specs(rs))
        rates["ours"].append(await asyncio.to_thread(ours, rs, 1, len(items), tmp))
        for peer in peers:
            doc = await asyncio.to_thread(run_peer, peer, base, topic, offsets, tmp, False)
            rates[peer].append(doc["events_per_s"])
        print({k: [round(x) for x in v] for k, v in rates.items()}, flush=True)
    o = statistics.median(rates["ours"])
    for peer in peers:
        r = statistics.median(rates[peer])
        print(
            f"RESULT name=peer_{peer} ours_events_per_s={o:.0f} baseline_events_per_s={r:.0f} "
            f"ratio={o / r:.2f} runs={args.runs} events={len(items)} "
            f"ours_all={[round(x) for x in rates['ours']]} peer_all={[round(x) for x in rates[peer]]}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--students", type=int, default=2000)
    ap.add_argument("--verify-events", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peers", default="faust,quix")
    args = ap.parse_args()
    with bench_kafka("bench-peers-") as (bootstrap, tmp):
        base = Settings.from_env(kafka_bootstrap=bootstrap, data_dir=str(tmp / "data"))
        asyncio.run(_main(base, args, tmp))


if __name__ == "__main__":
    main()
