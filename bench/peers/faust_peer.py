"""The presence and usage rules as a faust-streaming application: one agent over the activity topic,
state in Tables (changelogged to Kafka), the way faust applications keep per-key state.

Run by ``bench/bench_peers.py`` as its own process::

    python bench/peers/faust_peer.py SPEC_JSON

``SPEC_JSON`` names the broker, the topic, the last offset of every partition, the rule parameters and
where to write the result: events/s from the first record to the last, and (with ``verify``) the final
presence and usage cells for the comparison with the truth. Every record is decoded and validated by
the project's decoder, so the peer sees the same events.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.peer_rules import (  # noqa: E402
    cells_of,
    device_close,
    device_event,
    presence_update,
    presence_view,
)
from schemas.decoder import DEFAULT_LIMITS, decode_record  # noqa: E402

spec: dict[str, Any] = orjson.loads(Path(sys.argv.pop(1)).read_bytes())
LATENESS, GAP, TIMEOUT = spec["lateness_ms"], spec["gap_ms"], spec["timeout_ms"]
last_offsets = {int(p): o for p, o in spec["last_offsets"].items()}

app = faust.App(
    spec["app_id"],
    broker=f"kafka://{spec['bootstrap']}",
    store="memory://",
    topic_partitions=spec["partitions"],
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    broker_max_poll_records=spec.get("max_poll_records", 500),
)
activity = app.topic(spec["topic"], value_type=bytes, value_serializer="raw", key_serializer="raw")
presence = app.Table("presence", default=None, partitions=spec["partitions"])
devices = app.Table("devices", default=None, partitions=spec["partitions"])
cells = app.Table("cells", default=int, partitions=spec["partitions"])

counts = {"events": 0, "invalid": 0, "first": 0.0}
done: set[int] = set()
verify: dict[tuple[int, str, str, str], int] = {}


def _emitter(partition: int, student: str) -> Any:
    def emit(minute_s: int, app_: str, sub_app: str, ms: int) -> None:
        key = f"{partition}|{minute_s}|{app_}|{sub_app}|{student}"
        cells[key] += ms
        if spec["verify"]:
            k = (minute_s, app_, sub_app, student)
            verify[k] = verify.get(k, 0) + ms

    return emit


@app.agent(activity)
async def process(stream: Any) -> None:
    """Per record: decode, then the rules per event against the Tables."""
    async for event in stream.events():
        if not counts["first"]:
            counts["first"] = time.perf_counter()
        partition, offset = event.message.partition, event.message.offset
        now = int(time.time() * 1000)
        for outcome in decode_record(event.value, now, DEFAULT_LIMITS):
            ev = outcome.event
            if ev is None:
                counts["invalid"] += 1
                continue
            counts["events"] += 1
            student = f"{ev.district_id}:{ev.student_id}"
            new = presence_update(presence.get(student), ev)
            if new is not None:
                presence[student] = new
            device = f"{partition}|{student}|{ev.device_id}"
            dev, _dup = device_event(
                devices.get(device), ev, LATENESS, GAP, _emitter(partition, student)
            )
            if dev is not None:
                devices[device] = dev
        if offset >= last_offsets[partition] and partition not in done:
            _close_partition(partition)
            done.add(partition)
            if len(done) == len(last_offsets):
                _finish()


def _close_partition(partition: int) -> None:
    prefix = f"{partition}|"
    for key in [k for k in devices if k.startswith(prefix)]:
        dev = devices[key]
        student = key.split("|")[1]
        device_close(dev, GAP, _emitter(partition, student))
        devices[key] = dev


def _finish() -> None:
    elapsed = time.perf_counter() - counts["first"]
    now = int(time.time() * 1000)
    result: dict[str, Any] = {
        "events": counts["events"],
        "invalid": counts["invalid"],
        "elapsed_s": elapsed,
        "events_per_s": (counts["events"] + counts["invalid"]) / elapsed,
    }
    if spec["verify"]:
        result["now_ms"] = now
        result["presence"] = {k: presence_view(v, now, TIMEOUT) for k, v in presence.items()}
        result["cells"] = cells_of(verify)
    Path(spec["result"]).write_bytes(orjson.dumps(result))
    os._exit(0)  # the measurement is written; a clean faust shutdown takes seconds


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
