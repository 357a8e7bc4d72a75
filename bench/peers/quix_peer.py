"""The presence and usage rules as a Quix Streams application: a ``StreamingDataFrame`` over the
activity topic with a stateful ``apply`` (state in RocksDB, changelogged to Kafka), the way Quix
applications keep per-key state.

Run by ``bench/bench_peers.py`` in a virtual environment of its own (``.local/peer-quix``: Quix
Streams pins a pydantic older than the project's)::

    .local/peer-quix/bin/python bench/peers/quix_peer.py SPEC_JSON

The records are envelopes without a key, so the state of a record is its partition's: the rules
address students and devices by name inside it (``state.get(name)``). Same ``SPEC_JSON`` and result
as :mod:`bench.peers.faust_peer`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson
from quixstreams import Application, State

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.peer_rules import (  # noqa: E402
    cells_of,
    device_close,
    device_event,
    presence_update,
    presence_view,
)
from schemas.decoder import DEFAULT_LIMITS, decode_record  # noqa: E402

spec: dict[str, Any] = orjson.loads(Path(sys.argv[1]).read_bytes())
LATENESS, GAP, TIMEOUT = spec["lateness_ms"], spec["gap_ms"], spec["timeout_ms"]
last_offsets = {int(p): o for p, o in spec["last_offsets"].items()}
counts = {"events": 0, "invalid": 0, "first": 0.0}
done: set[int] = set()
verify: dict[tuple[int, str, str, str], int] = {}
shown: dict[str, list[Any]] = {}  # presence as a sink downstream would see it (verify only)

app = Application(
    broker_address=spec["bootstrap"],
    consumer_group=spec["app_id"],
    auto_offset_reset="earliest",
    state_dir=spec["state_dir"],
    loglevel="WARNING",
)
activity = app.topic(spec["topic"], value_deserializer="bytes", key_deserializer="bytes")


def _emitter(state: State, student: str) -> Any:
    def emit(minute_s: int, app_: str, sub_app: str, ms: int) -> None:
        key = f"c|{minute_s}|{app_}|{sub_app}|{student}"
        state.set(key, state.get(key, 0) + ms)
        if spec["verify"]:
            k = (minute_s, app_, sub_app, student)
            verify[k] = verify.get(k, 0) + ms

    return emit


def rules(value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> int:
    """One record: decode, then the rules per event against the partition's state."""
    if not counts["first"]:
        counts["first"] = time.perf_counter()
    now = int(time.time() * 1000)
    valid = 0
    for outcome in decode_record(value, now, DEFAULT_LIMITS):
        ev = outcome.event
        if ev is None:
            counts["invalid"] += 1
            continue
        valid += 1
        student = f"{ev.district_id}:{ev.student_id}"
        new = presence_update(state.get(f"p|{student}"), ev)
        if new is not None:
            state.set(f"p|{student}", new)
            if spec["verify"]:
                shown[student] = new
        device = f"d|{student}|{ev.device_id}"
        current = state.get(device)
        if current is None:
            state.set("devices", [*state.get("devices", []), device])
        dev, _dup = device_event(current, ev, LATENESS, GAP, _emitter(state, student))
        if dev is not None:
            state.set(device, dev)
    counts["events"] += valid
    return valid


def at_end(value: int, key: Any, timestamp: int, headers: Any, state: State) -> int:
    """Closes the partition's devices after its last record, and stops after the last partition."""
    from quixstreams import message_context

    ctx = message_context()
    partition, offset = ctx.partition, ctx.offset
    if offset >= last_offsets[partition] and partition not in done:
        done.add(partition)
        for device in state.get("devices", []):
            dev = state.get(device)
            device_close(dev, GAP, _emitter(state, device.split("|")[1]))
            state.set(device, dev)
        if len(done) == len(last_offsets):
            _finish()
    return value


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
        result["presence"] = {k: presence_view(v, now, TIMEOUT) for k, v in shown.items()}
        result["cells"] = cells_of(verify)
    Path(spec["result"]).write_bytes(orjson.dumps(result))
    app.stop()


sdf = app.dataframe(activity)
sdf = sdf.apply(rules, stateful=True, metadata=True)
sdf = sdf.apply(at_end, stateful=True, metadata=True)

if __name__ == "__main__":
    app.run()
