"""The device collector (``csync collector``): devices POST batches of events over HTTPS.

``POST /v1/events`` with ``Authorization: Bearer <token>`` and a JSON array of events (optionally
``Content-Encoding: gzip``). The token decides the district: an event claiming another district is
rejected (``wrong_district``). Every event is validated and minimised by :mod:`schemas.decoder`
here, so only minimised events ever reach Kafka: valid ones go to the activity topic in
per-partition envelopes shared by all requests of a few-millisecond window (CONTRACT §2a); invalid
ones go to the DLQ with the CONTRACT §1 headers (``source_topic`` = ``collector``,
``source_partition``/``source_offset`` = ``-1``, ``source_index`` = position in the request body).
The answer lists every event's outcome and is sent only after Kafka acknowledged all of them.

Back-pressure: a per-token event rate (429 + Retry-After) and a bound on events waiting for Kafka
(503 + Retry-After). Body and event-count limits give 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import math
import time
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from csync import metrics
from csync.settings import Settings
from ops.endpoints import OpsServer
from producers.partitioner import partition_for_key
from schemas.decoder import (
    MAX_ENVELOPE_BYTES,
    MAX_ENVELOPE_EVENTS,
    EventOutcome,
    Limits,
    Reason,
    decode_record,
    encode_event,
    event_object,
)
from schemas.event import ActivityEvent
from schemas.probe import check_real_district

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "schemas" / "openapi" / "collector.v1.json"
DLQ_SOURCE = b"collector"
# The producer's own linger: none, the collector batches windows itself (see make_producer).
PRODUCER_LINGER_MS = 0
# Failures of the whole body (not of one event): answered with an HTTP error, nothing produced.
# Bound of the (district, student) -> partition cache of the batcher.
_PARTITION_CACHE_MAX = 1 << 16
_EVENT = itemgetter(1)
_REJECTION = itemgetter(2)
_DROPPED = itemgetter(3)
_DISTRICT = itemgetter(3)
_RECORD_LEVEL = frozenset(
    {Reason.NOT_JSON, Reason.NOT_OBJECT, Reason.ENVELOPE_EMPTY, Reason.ENVELOPE_TOO_LARGE}
)


class TokenError(ValueError):
    """The token file cannot be used."""


def hash_token(token: str) -> str:
    """The form tokens are stored in: ``sha256:<hex>`` (the file never holds a usable token)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: Path) -> dict[str, str]:
    """``{token_hash: district_id}`` from the JSON token file."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise TokenError(f"cannot read collector tokens {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and k.startswith("sha256:") and isinstance(v, str)
        for k, v in data.items()
    ):
        raise TokenError(f"{path}: expected {{'sha256:<hex>': district_id}}")
    return data


def add_token(path: Path, token: str, district_id: str) -> None:
    """Store ``token`` (hashed) for ``district_id`` in the token file, creating it if needed."""
    check_real_district(district_id)  # the probe's reserved district never gets a device token
    tokens = load_tokens(path) if path.exists() else {}
    tokens[hash_token(token)] = district_id
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(tokens, option=orjson.OPT_INDENT_2))
    tmp.chmod(0o600)
    tmp.replace(path)


def tokens_path(settings: Settings) -> Path:
    return Path(settings.collector_tokens_file or Path(settings.data_dir) / "collector_tokens.json")


@dataclass
class _TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, n: int, now: float) -> float:
        """0 if ``n`` events may pass now, else the seconds to wait before retrying."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


@dataclass
class _Pending:
    """Events of all requests waiting for the next flush, per partition."""

    events: dict[int, list[ActivityEvent]] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class Collector:
    """The collector's state: the Kafka producer, the shared batcher, rate limits."""

    def __init__(self, settings: Settings, tokens: dict[str, str], producer: Any) -> None:
        self.settings = settings
        self.tokens = tokens
        self.producer = producer
        self.limits = Limits.from_settings(settings)
        self.partitions = settings.partitions
        self.in_flight = 0
        self._buckets: dict[str, _TokenBucket] = {}
        self._pending = _Pending()
        self._flushers: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._send_lock = asyncio.Lock()
        # Flushes sent whose acknowledgements are still awaited, and the event that Kafka has
        # acknowledged all of them (the producer is idle).
        self._unacked_flushes = 0
        self._kafka_idle = asyncio.Event()
        self._kafka_idle.set()
        self._partition_of: dict[tuple[str, str], int] = {}

    async def start(self) -> None:
        found = await self.producer.partitions_for(self.settings.topic_activity)
        self.partitions = len(found)
        self._partition_of.clear()

    # --- the shared batcher: every request's valid events go into per-partition envelopes
    def _enqueue(self, events: list[ActivityEvent]) -> asyncio.Future[None]:
        known = self._partition_of
        if len(known) > _PARTITION_CACHE_MAX:
            known.clear()
        groups = self._pending.events
        for event in events:
            student = (event[3], event[4])  # (district_id, student_id)
            partition = known.get(student)
            if partition is None:
                partition = partition_for_key(event.student_key.encode(), self.partitions)
                known[student] = partition
            group = groups.get(partition)
            if group is None:
                groups[partition] = [event]
            else:
                group.append(event)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.waiters.append(done)
        if not self._flush_scheduled:
            # One flush per window; a window's flush does not wait for the previous window's
            # acknowledgements (only its sends are ordered after them, by the lock).
            self._flush_scheduled = True
            self._flushers.add(task := asyncio.create_task(self._flush_later()))
            task.add_done_callback(self._flushers.discard)
        return done

    async def _flush_later(self) -> None:
        """Send the window's events once Kafka is idle, or after the linger at the latest.

        Devices wait for Kafka's acknowledgement, and the idempotent producer has one request in
        flight per broker: while a flush is unacknowledged, the next one could only queue behind
        it, so the window gathers events until then (bigger envelopes, no added wait). When
        Kafka is idle the window closes at once (after the requests already decoded in this
        turn of the event loop joined it): a fixed linger would only add latency there.
        """
        if self._kafka_idle.is_set():
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._kafka_idle.wait(), self.settings.collector_linger_ms / 1000
                )
        pending, self._pending = self._pending, _Pending()
        self._flush_scheduled = False
        self._unacked_flushes += 1
        self._kafka_idle.clear()
        try:
            sends = []
            async with self._send_lock:  # a student's events stay in order across windows
                for partition, events in pending.events.items():
                    for chunk in _envelopes(events):
                        sends.append(
                            await self.producer.send(
                                self.settings.topic_activity, chunk, partition=partition
                            )
                        )
            await asyncio.gather(*sends)
        except Exception as exc:  # noqa: BLE001 - every waiting request learns of the failure
            for waiter in pending.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        finally:
            self._unacked_flushes -= 1
            if not self._unacked_flushes:
                self._kafka_idle.set()
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _dlq(self, rejected: list[tuple[int, str | None, bytes, str, str]]) -> None:
        sends = []
        for index, key, raw, reason, detail in rejected:
            headers = [
                ("error", reason.encode()),
                ("error_detail", detail.encode()),
                ("source_topic", DLQ_SOURCE),
                ("source_partition", b"-1"),
                ("source_offset", b"-1"),
                ("source_index", str(index).encode()),
            ]
            sends.append(
                await self.producer.send(
                    self.settings.topic_dlq,
                    raw,
                    key=key.encode() if key else None,
                    headers=headers,
                )
            )
            metrics.DLQ_RECORDS.labels(reason).inc()
        await asyncio.gather(*sends)

    # --- HTTP
    def _token(self, request: web.Request) -> tuple[str, str] | None:
        """``(token_hash, district_id)`` of the request's bearer token, if it is known."""
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        hashed = hash_token(token.strip())
        district = self.tokens.get(hashed)
        return None if district is None else (hashed, district)

    async def handle_events(self, request: web.Request) -> web.Response:
        response = await self._handle_events(request)
        metrics.COLLECTOR_REQUESTS.labels(str(response.status)).inc()
        return response

    async def _handle_events(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if token is None:
            return _error(401, "unauthorized", "a valid bearer token is required")
        token_hash, district = token
        body = await _read_body(request, self.settings.collector_max_body_bytes)
        if isinstance(body, web.Response):
            return body
        now_ms = int(time.time() * 1000)
        outcomes = decode_record(body, now_ms, self.limits)
        first = outcomes[0].rejection
        if first is not None and first.reason in _RECORD_LEVEL:
            status = 413 if first.reason == Reason.ENVELOPE_TOO_LARGE else 400
            return _error(status, first.reason.value, first.detail)
        if len(outcomes) > self.settings.collector_max_events:
            return _error(413, "too_many_events", f"at most {self.settings.collector_max_events}")
        wait = self._bucket(token_hash).take(len(outcomes), time.monotonic())
        if wait:
            return _error(429, "rate_limited", "slow down", retry_after=wait)
        if self.in_flight + len(outcomes) > self.settings.collector_max_in_flight:
            return _error(503, "busy", "Kafka is behind; retry", retry_after=1)
        results: list[dict[str, Any]] = []
        valid: list[ActivityEvent] = []
        rejected: list[tuple[int, str | None, bytes, str, str]] = []
        answer: bytes | None = None
        if _all_accepted(outcomes, district):
            # The common case, checked column by column: every event valid, of the token's
            # district, nothing dropped. Its answer depends only on the number of events.
            valid = list(map(_EVENT, outcomes))
            answer = _all_accepted_answer(len(outcomes))
        for outcome in outcomes if answer is None else ():
            index = max(outcome.source_index, 0)  # -1: the body was one event object
            event = outcome.event
            for name in outcome.dropped_fields:
                metrics.FIELDS_DROPPED.labels(name).inc()
            if event is not None and event.district_id != district:
                # The original member is gone; the DLQ gets the minimised event instead.
                detail = f"token of district {district!r}, event of {event.district_id!r}"
                rejected.append(
                    (index, event.student_key, encode_event(event), "wrong_district", detail)
                )
                results.append(_rejected(index, "wrong_district", detail))
            elif event is not None:
                valid.append(event)
                results.append({"index": index, "status": "accepted"})
            else:
                assert outcome.rejection is not None  # noqa: S101 - decoder: one of the two
                reason, detail = outcome.rejection.reason.value, outcome.rejection.detail
                rejected.append((index, None, outcome.raw or b"", reason, detail))
                results.append(_rejected(index, reason, detail))
                metrics.EVENTS_INVALID.labels(reason).inc()
        self.in_flight += len(outcomes)
        try:
            waits = []
            if valid:
                waits.append(self._enqueue(valid))
            if rejected:
                waits.append(asyncio.ensure_future(self._dlq(rejected)))
            await asyncio.gather(*waits)
        except Exception:  # noqa: BLE001 - Kafka failed: the device must retry all of it
            return _error(503, "kafka_unavailable", "events not stored; retry", retry_after=1)
        finally:
            self.in_flight -= len(outcomes)
        metrics.COLLECTOR_EVENTS.labels("accepted").inc(len(valid))
        metrics.COLLECTOR_EVENTS.labels("rejected").inc(len(rejected))
        metrics.EVENTS_VALID.inc(len(valid))
        if answer is None:
            answer = orjson.dumps(
                {"accepted": len(valid), "rejected": len(rejected), "results": results}
            )
        return web.Response(body=answer, content_type="application/json")

    def _bucket(self, token_hash: str) -> _TokenBucket:
        bucket = self._buckets.get(token_hash)
        if bucket is None:
            rate = self.settings.collector_token_rate
            burst = max(rate, float(self.settings.collector_max_events))
            bucket = _TokenBucket(rate, burst, burst, time.monotonic())
            self._buckets[token_hash] = bucket
        return bucket

    async def handle_health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "in_flight": self.in_flight})

    async def handle_openapi(self, _request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")


def _envelopes(events: list[ActivityEvent]) -> list[bytes]:
    """Envelopes of ``events`` in order, cut at 1,000 events or 1 MiB (as ``encode_event`` each)."""
    chunks: list[bytes] = []
    for start in range(0, len(events), MAX_ENVELOPE_EVENTS):
        part = events[start : start + MAX_ENVELOPE_EVENTS]
        # One orjson call per envelope: the same bytes as "[" + ",".join(encode_event(e)) + "]".
        value = orjson.dumps(
            [
                {"v": 1, "event_id": e[0], "kind": e[1], "ts": e[2], "district_id": e[3],
                 "student_id": e[4], "device_id": e[5], "app": e[6], "sub_app": e[7]}
                if e[6] and e[7] else event_object(e)
                for e in part
            ]
        )  # fmt: skip
        if len(value) <= MAX_ENVELOPE_BYTES:
            chunks.append(value)
        else:  # rare: large members; the rest is cut by size
            chunks.extend(_envelopes_by_size(events[start:]))
            break
    return chunks


def _envelopes_by_size(events: list[ActivityEvent]) -> list[bytes]:
    chunks: list[bytes] = []
    parts: list[bytes] = []
    size = 2
    for event in events:
        encoded = encode_event(event)
        if parts and (
            len(parts) >= MAX_ENVELOPE_EVENTS or size + len(encoded) > MAX_ENVELOPE_BYTES
        ):
            chunks.append(b"[" + b",".join(parts) + b"]")
            parts, size = [], 2
        parts.append(encoded)
        size += len(encoded) + 1
    if parts:
        chunks.append(b"[" + b",".join(parts) + b"]")
    return chunks


async def _read_body(request: web.Request, limit: int) -> bytes | web.Response:
    """The body, at most ``limit`` bytes after decoding; aiohttp undoes ``Content-Encoding: gzip``
    as it streams, so a gzip bomb stops at the limit."""
    if request.content_length is not None and request.content_length > limit:
        return _error(413, "body_too_large", f"at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = await request.content.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return _error(413, "body_too_large", f"at most {limit} bytes after decoding")
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - aiohttp's payload errors (e.g. broken gzip)
        return _error(400, "bad_gzip", f"body cannot be decoded: {exc}")
    return b"".join(chunks)


def _all_accepted(outcomes: list[EventOutcome], district: str) -> bool:
    """Whether every outcome is a valid event of ``district`` with no dropped field."""
    count = len(outcomes)
    if list(map(_REJECTION, outcomes)).count(None) != count:
        return False
    if any(map(_DROPPED, outcomes)):
        return False
    return set(map(_DISTRICT, map(_EVENT, outcomes))) == {district}


@functools.lru_cache(maxsize=1024)
def _all_accepted_answer(count: int) -> bytes:
    results = [{"index": i, "status": "accepted"} for i in range(count)]
    return orjson.dumps({"accepted": count, "rejected": 0, "results": results})


def _rejected(index: int, reason: str, detail: str) -> dict[str, Any]:
    return {"index": index, "status": "rejected", "reason": reason, "detail": detail}


def _error(status: int, error: str, detail: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return web.Response(
        status=status,
        body=orjson.dumps({"error": error, "detail": detail}),
        content_type="application/json",
        headers=headers,
    )


def make_app(collector: Collector) -> web.Application:
    """The aiohttp application of ``collector`` (its producer must be started)."""
    app = web.Application(client_max_size=collector.settings.collector_max_body_bytes + 1024)
    app.router.add_post("/v1/events", collector.handle_events)
    app.router.add_get("/healthz", collector.handle_health)
    app.router.add_get("/openapi.json", collector.handle_openapi)
    return app


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """The collector's idempotent producer (acks=all).

    No linger of its own: the collector hands it whole windows of envelopes at once (see
    ``Collector._flush_later``), so lingering would only delay every answer.
    """
    from producers.simulator import default_compression

    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        compression_type=default_compression(),
        linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=2 * 1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


def tune_gc() -> None:
    """Freeze what start-up made and collect the young generation less often (call once, after
    start-up).

    A request of 500 events makes ~1,500 short-lived tracked objects (parsed members, events,
    outcomes); with CPython's default thresholds (700, 10, 10) the cyclic GC ran twice per
    request and re-scanned the libraries' objects. The request path makes no reference cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def serve(settings: Settings) -> None:
    """Run the collector until cancelled."""
    tokens = load_tokens(tokens_path(settings))
    producer = make_producer(settings)
    await producer.start()
    try:
        collector = Collector(settings, tokens, producer)
        await collector.start()
        # No access log: it would hold devices' addresses, and it costs per request.
        runner = web.AppRunner(make_app(collector), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.collector_host, settings.collector_port)
        await site.start()
        # Operators' endpoints on their own loopback port: the devices' port serves devices only.
        ops = OpsServer("collector", settings.collector_metrics_port)
        ops.add_readiness("kafka", lambda: producer.client.cluster.brokers() != set())
        await ops.start()
        tune_gc()
        try:
            await asyncio.Event().wait()
        finally:
            await ops.stop()
            await runner.cleanup()
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
