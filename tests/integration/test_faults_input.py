"""Fault scenarios: bad input end to end.

- 8.7 poison stream: ≥ 10,000 invalid events (six kinds of breakage) mixed into a valid run. Every one lands in
  the DLQ with its reason and its source coordinates (CONTRACT §1 headers) that point at the record and the
  envelope member it came from; the worker keeps running (the 50 % DLQ cap does not trip at a 1 : 2 mix) and its
  speed is compared with a clean run of the same size; the valid events' totals equal the truth.
- 8.8 PII never passes: valid events carrying names, emails, phone numbers, street addresses, IPs, base64
  photos and PII in URL queries (a fifth of the students' events sent to the wrong partition, so the worker
  re-routes them). After the run
  no such value is in any Redis key or value, any ClickHouse String column, the internal topics downstream of
  validation (presence, usage cells, worker state incl. decompressed snapshots, day keys), the worker's
  re-routed records, or the DLQ (the DLQ holds raw input of rejected events only: their PII uses another
  marker and is allowed there).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from aiokafka import AIOKafkaProducer

from csync.settings import Settings
from producers.simulator import SendOptions, SendReport, produce_roster
from producers.simulator_model import (
    ActivityGenerator,
    InvalidEvent,
    SimulationConfig,
    build_population,
)
from producers.simulator_wire import wire_object
from schemas.decoder import EventOutcome, Reason, decode_record
from schemas.envelope import join_envelope
from schemas.event import ActivityEvent
from schemas.routing import partition_for_key
from tests.integration.e2e_harness import (
    E2E_CONFIG,
    Pipeline,
    pipeline_settings,
    say,
    variant,
    verify,
)

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]

DLQ_HEADERS = {
    "error",
    "error_detail",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_index",
}


async def _worker_rate(pipeline: Pipeline, events: int) -> tuple[float, float]:
    """Start one worker on the backlog; ``(events/s, seconds)`` from its partitions being recovered to its
    group having committed the end of the activity topic (commits follow snapshots, every 1 s)."""
    worker = pipeline.start_worker(0)

    async def recovered() -> bool:
        return worker.tail(200).count("recovered:") >= pipeline.s.partitions

    await pipeline.wait_for("the worker to recover its partitions", recovered, 120, poll_s=0.05)
    started = time.monotonic()
    await pipeline.wait_worker_caught_up(timeout_s=300)
    seconds = time.monotonic() - started
    return events / seconds, seconds


async def test_poison_stream_lands_in_the_dlq_and_the_worker_keeps_its_speed(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Clean run: valid events only, as a backlog, to measure the worker's speed. One event per record, the
    # path with the most per-event work (envelopes are faster), so the comparison is not lost in noise.
    clean_config = SimulationConfig(**{**E2E_CONFIG.__dict__, "invalid_rate": 0.0})
    clean = Pipeline(variant(pipeline_settings(make_settings()), "clean"), tmp_path / "clean")
    try:
        await clean.create_topics()
        clean_report, _ = await clean.simulate(
            clean_config, SendOptions(count=20_000, speed=0, single=True)
        )
        clean_rate, clean_s = await _worker_rate(clean, clean_report.events_sent)
    finally:
        clean.close()

    # Poison run: one invalid event after about every second valid one.
    poison_config = SimulationConfig(**{**E2E_CONFIG.__dict__, "invalid_rate": 0.5})
    settings = pipeline_settings(make_settings())
    pipeline = Pipeline(settings, tmp_path / "poison")
    try:
        await pipeline.create_topics()
        report, population = await pipeline.simulate(
            poison_config, SendOptions(count=34_000, speed=0, single=True)
        )
        assert report.invalid_sent >= 10_000
        total = report.events_sent + report.invalid_sent
        poison_rate, poison_s = await _worker_rate(pipeline, total)
        pipeline.start_redis_sink()
        pipeline.start_clickhouse_sink()
        await pipeline.wait_complete()
        dlq = await pipeline.read_topic_with_headers(settings.topic_dlq)
        source = {(p, o): v for p, o, _k, v in await pipeline.read_topic(settings.topic_activity)}
        worker_alive = pipeline.workers[0].alive()
        await verify(pipeline, report, population)
    finally:
        pipeline.close()

    assert worker_alive
    assert "DlqRateExceeded" not in pipeline.workers[0].tail(10_000)
    assert len(dlq) == report.invalid_sent, f"{len(dlq)} DLQ records for {report.invalid_sent}"
    reasons: Counter[str] = Counter()
    decoded: dict[tuple[int, int], list[EventOutcome]] = {}
    now_ms = int(time.time() * 1000)
    for _key, value, headers in dlq:
        assert set(headers) == DLQ_HEADERS, headers
        reason = headers["error"].decode()
        reasons[reason] += 1
        assert reason in {r.value for r in Reason}
        assert headers["source_topic"].decode() == settings.topic_activity
        coords = (int(headers["source_partition"]), int(headers["source_offset"]))
        if coords not in decoded:
            record = source[coords]
            assert record is not None
            decoded[coords] = decode_record(record, now_ms)
        member = decoded[coords][max(0, int(headers["source_index"]))]
        assert member.rejection is not None and member.rejection.reason.value == reason
        assert member.raw == value
    assert len(reasons) == 6, reasons
    ratio = poison_rate / clean_rate
    say(
        f"poison stream: {report.invalid_sent} invalid + {report.events_sent} valid events; DLQ "
        f"{len(dlq)} records by reason {dict(reasons)}; worker clean {clean_report.events_sent} events "
        f"in {clean_s:.1f}s = {clean_rate:,.0f} ev/s, poison {total} events in {poison_s:.1f}s = "
        f"{poison_rate:,.0f} ev/s (valid only {report.events_sent / poison_s:,.0f}/s); ratio {ratio:.2f}"
    )
    assert ratio >= 0.5, f"the worker slowed to {ratio:.2f} of its clean speed"


# --- 8.8 PII

PII_MARK = re.compile(
    rb"Quillfeather|family-mail\.example|\+1-555-01\d\d|Wisteria Lane|203\.0\.113\.|"
    rb"iVBORw0KGgoPII|Quillfeather%40|Marguerite"
)
DLQ_ONLY_MARK = re.compile(rb"Invalidsworth")


def _pii(i: int) -> dict[str, Any]:
    photo = base64.b64encode(b"\x89PNG\r\n\x1a\n" + i.to_bytes(4, "big") * 64).decode()
    return {
        "student_name": f"Marguerite Quillfeather {i}",
        "email": f"m.quill{i}@family-mail.example",
        "phone": f"+1-555-01{i % 100:02d}-{i % 10000:04d}",
        "home_address": {"street": f"{i} Wisteria Lane", "city": "Springfield"},
        "ip": f"203.0.113.{i % 250}",
        "photo": "iVBORw0KGgoPII" + photo,
        "notes": [f"Marguerite said {i}", {"parent_email": f"p{i}@family-mail.example"}],
    }


async def test_pii_in_extra_fields_never_passes_validation(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    config = SimulationConfig(**{**E2E_CONFIG.__dict__, "invalid_rate": 0.02})
    settings = pipeline_settings(make_settings())
    pipeline = Pipeline(settings, tmp_path / "pipeline")
    population = build_population(config)
    items = []
    for item in ActivityGenerator(config, population, int(time.time() * 1000) - 900_000).items():
        items.append(item)
        if len(items) >= 4000:
            break
    valid = [i for i in items if isinstance(i, ActivityEvent)]
    produced: set[tuple[int, int]] = set()
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await produce_roster(producer, settings.topic_roster, population)
            futures = []
            groups: dict[int, list[bytes]] = {}
            for n, item in enumerate(items):
                obj = wire_object(item)
                key = (item.key if isinstance(item, InvalidEvent) else item.student_key).encode()
                if isinstance(item, InvalidEvent):
                    obj = (
                        {**obj, "guardian": f"Invalidsworth {n}"} if isinstance(obj, dict) else obj
                    )
                else:
                    obj = {**obj, **_pii(n)}
                    if obj.get("app") == "web":
                        obj["url"] += f"&email=m.quill{n}%40family-mail.example&who=Marguerite"
                partition = partition_for_key(key, settings.partitions)
                if key.endswith((b"0", b"5")):
                    # Every event of these students comes from a misconfigured producer: the wrong
                    # partition, re-routed by the worker (all of a device's events take the same path,
                    # so their order is kept and none becomes late on the way).
                    futures.append(
                        await producer.send(
                            settings.topic_activity,
                            orjson.dumps(obj),
                            key=key,
                            partition=(partition + 1) % settings.partitions,
                        )
                    )
                    continue
                groups.setdefault(partition, []).append(orjson.dumps(obj))
                if len(groups[partition]) >= 40:
                    value = join_envelope(groups.pop(partition))
                    futures.append(
                        await producer.send(settings.topic_activity, value, partition=partition)
                    )
            for partition, members in groups.items():
                value = join_envelope(members)
                futures.append(
                    await producer.send(settings.topic_activity, value, partition=partition)
                )
            for meta in await asyncio.gather(*futures):
                produced.add((meta.partition, meta.offset))
        finally:
            await producer.stop()
        await pipeline.wait_complete()

        # Kafka: every topic downstream of validation, the worker's re-routed records and the DLQ.
        found: dict[str, list[bytes]] = {}
        for topic, count in (
            (settings.topic_presence, None),
            (settings.topic_usage_cells, None),
            (settings.topic_day_keys, 1),
        ):
            found[topic] = [v for _p, _o, _k, v in await pipeline.read_topic(topic, count) if v]
        state = [v for _p, _o, _k, v in await pipeline.read_topic(settings.topic_worker_state) if v]
        snapshots = [zstandard.ZstdDecompressor().decompress(v) for v in state if v[:4] == ZSTD]
        found[settings.topic_worker_state] = state + snapshots
        rerouted = [
            v
            for p, o, _k, v in await pipeline.read_topic(settings.topic_activity)
            if (p, o) not in produced and v
        ]
        found["re-routed activity records"] = rerouted
        dlq = await pipeline.read_topic_with_headers(settings.topic_dlq)
        report = SendReport(events_sent=len(valid), acked_events=valid)
        verdict = await verify(pipeline, report, population)
        redis_blobs = pipeline.redis_dump()
        ch_strings = pipeline.read_clickhouse().strings
    finally:
        pipeline.close()

    assert snapshots and rerouted and found[settings.topic_usage_cells]
    for where, blobs in found.items():
        leaks = [b[:200] for b in blobs if PII_MARK.search(b) or DLQ_ONLY_MARK.search(b)]
        assert not leaks, f"PII in {where}: {leaks[:3]}"
    leaks_redis = [b for b in redis_blobs if PII_MARK.search(b) or DLQ_ONLY_MARK.search(b)]
    assert not leaks_redis, f"PII in Redis: {leaks_redis[:3]}"
    ch_values = [v.encode() for vs in ch_strings.values() for v in vs]
    assert not [v for v in ch_values if PII_MARK.search(v) or DLQ_ONLY_MARK.search(v)]
    # The DLQ holds rejected input only: the invalid events' marker, never a valid event's PII.
    assert dlq and all(h.get("error") for _k, _v, h in dlq)
    assert not [v for _k, v, _h in dlq if PII_MARK.search(v)]
    assert sum(1 for _k, v, _h in dlq if DLQ_ONLY_MARK.search(v)) == len(dlq)
    say(
        f"PII: {len(valid)} valid events with 7 PII fields each ({len(rerouted)} re-routed), "
        f"{len(dlq)} rejected ones in the DLQ; scanned {sum(len(b) for b in found.values())} internal "
        f"records ({len(snapshots)} snapshots decompressed), {len(redis_blobs)} Redis strings, "
        f"{len(ch_values)} ClickHouse strings: no PII; {verdict.cells} cells exact"
    )


ZSTD = b"\x28\xb5\x2f\xfd"
