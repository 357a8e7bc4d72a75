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
import math
import time
from collections.abc import Mapping
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from csync import metrics
from csync.kafka_client import check_credentials, producer_options
from csync.settings import Settings
from csync.tokens import collector_token_store
from ops.endpoints import OpsServer
from producers.collector_batcher import WindowBatcher
from producers.collector_tokens import TokenBucket, hash_token
from producers.collector_tokens import TokenError as TokenError
from producers.collector_tokens import add_token as add_token
from producers.collector_tokens import load_tokens as load_tokens
from producers.collector_tokens import tokens_path as tokens_path
from schemas.decoder import (
    EventOutcome,
    Limits,
    Reason,
    decode_record_within,
    decode_split_within,
    encode_event,
)
from schemas.dlq import COLLECTOR_SOURCE, dlq_record
from schemas.event import ActivityEvent

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "schemas" / "openapi" / "collector.v1.json"
# The producer's own linger: none, the collector batches windows itself (see make_producer).
PRODUCER_LINGER_MS = 0
_EVENT = itemgetter(1)
_DISTRICT = itemgetter(3)
# Failures of the whole body (not of one event): answered with an HTTP error, nothing produced.
_RECORD_LEVEL = frozenset(
    {Reason.NOT_JSON, Reason.NOT_OBJECT, Reason.ENVELOPE_EMPTY, Reason.ENVELOPE_TOO_LARGE}
)


class Collector:
    """The collector's state: the Kafka producer, the shared batcher, rate limits."""

    def __init__(self, settings: Settings, tokens: Mapping[str, str], producer: Any) -> None:
        self.settings = settings
        self.tokens = tokens
        self.producer = producer
        self.limits = Limits.from_settings(settings)
        self.in_flight = 0
        self._buckets: dict[str, TokenBucket] = {}
        self.batcher = WindowBatcher(
            producer, settings.topic_activity, settings.partitions, settings.collector_linger_ms
        )

    async def start(self) -> None:
        found = await self.producer.partitions_for(self.settings.topic_activity)
        self.batcher.set_partitions(len(found))

    async def _dlq(self, rejected: list[tuple[int, str | None, bytes, str, str]]) -> None:
        sends = []
        for index, key, raw, reason, detail in rejected:
            record_key, value, headers = dlq_record(
                key.encode() if key else None,
                raw,
                reason,
                detail,
                source_topic=COLLECTOR_SOURCE,
                source_partition=-1,
                source_offset=-1,
                source_index=index,
            )
            sends.append(
                await self.producer.send(
                    self.settings.topic_dlq, value, key=record_key, headers=headers
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
        window = self.limits.ts_window(int(time.time() * 1000))
        events, notes = decode_split_within(body, *window)
        # The first event's rejection (index -1 or 0): record-level failures come alone.
        first = notes[0].rejection if notes and notes[0].source_index <= 0 else None
        if first is not None and first.reason in _RECORD_LEVEL:
            status = 413 if first.reason == Reason.ENVELOPE_TOO_LARGE else 400
            return _error(status, first.reason.value, first.detail)
        count = len(events) + list(map(_EVENT, notes)).count(None)  # valid + rejected
        if count > self.settings.collector_max_events:
            return _error(413, "too_many_events", f"at most {self.settings.collector_max_events}")
        wait = self._bucket(token_hash).take(count, time.monotonic())
        if wait:
            return _error(429, "rate_limited", "slow down", retry_after=wait)
        if self.in_flight + count > self.settings.collector_max_in_flight:
            return _error(503, "busy", "Kafka is behind; retry", retry_after=1)
        results: list[dict[str, Any]] = []
        valid: list[ActivityEvent] = []
        rejected: list[tuple[int, str | None, bytes, str, str]] = []
        answer: bytes | None = None
        outcomes: list[EventOutcome] = []
        if not notes and set(map(_DISTRICT, events)) == {district}:
            # The common case, checked column by column: every event valid, of the token's
            # district, nothing dropped. Its answer depends only on the number of events.
            valid = events
            answer = _all_accepted_answer(count)
        else:  # the answer lists each event: its outcome, by position (same window, same answer)
            outcomes = decode_record_within(body, *window)
        for outcome in outcomes:
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
        self.in_flight += count
        try:
            waits = []
            if valid:
                waits.append(self.batcher.enqueue(valid))
            if rejected:
                waits.append(asyncio.ensure_future(self._dlq(rejected)))
            await asyncio.gather(*waits)
        except Exception:  # noqa: BLE001 - Kafka failed: the device must retry all of it
            return _error(503, "kafka_unavailable", "events not stored; retry", retry_after=1)
        finally:
            self.in_flight -= count
        metrics.COLLECTOR_EVENTS.labels("accepted").inc(len(valid))
        metrics.COLLECTOR_EVENTS.labels("rejected").inc(len(rejected))
        metrics.EVENTS_VALID.inc(len(valid))
        if answer is None:
            answer = orjson.dumps(
                {"accepted": len(valid), "rejected": len(rejected), "results": results}
            )
        return web.Response(body=answer, content_type="application/json")

    def _bucket(self, token_hash: str) -> TokenBucket:
        bucket = self._buckets.get(token_hash)
        if bucket is None:
            rate = self.settings.collector_token_rate
            burst = max(rate, float(self.settings.collector_max_events))
            bucket = TokenBucket(rate, burst, burst, time.monotonic())
            self._buckets[token_hash] = bucket
        return bucket

    async def handle_health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "in_flight": self.in_flight})

    async def handle_openapi(self, _request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")


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
    ``WindowBatcher._flush_later``), so lingering would only delay every answer.
    """
    from producers.simulator import default_compression

    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        **producer_options(settings),
        compression_type=default_compression(),
        linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=2 * 1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


def tune_gc() -> None:
    """Freeze what start-up made and collect the young generation less often (call once, after
    start-up).

    A request makes a few short-lived tracked objects per event (parsed members, events,
    outcomes); with CPython's default thresholds (700, 10, 10) the cyclic GC would run several
    times per request and re-scan the libraries' objects. The request path makes no reference
    cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


class ListenError(Exception):
    """The devices' port cannot be bound (taken, or not an address of this host)."""


async def _listen(runner: web.AppRunner, settings: Settings) -> None:
    host, port = settings.collector_host, settings.collector_port
    site = web.TCPSite(runner, host, port, reuse_port=settings.collector_reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        hint = "" if settings.collector_reuse_port else (
            "; to run several collector processes on one port set COLLECTOR_REUSE_PORT=1 in each"
        )  # fmt: skip
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from exc


async def serve(settings: Settings) -> None:
    """Run the collector until cancelled."""
    # Reloaded on change: a revoked token is refused within TOKEN_RELOAD_S, without a restart.
    tokens = collector_token_store(settings, load_tokens)
    producer = make_producer(settings)
    await check_credentials(settings)  # a rejected login: one clear error, at once
    await producer.start()
    try:
        collector = Collector(settings, tokens, producer)
        await collector.start()
        # No access log: it would hold devices' addresses, and it costs per request.
        runner = web.AppRunner(make_app(collector), access_log=None)
        await runner.setup()
        await _listen(runner, settings)
        # Operators' endpoints on their own loopback port: the devices' port serves devices only.
        ops = OpsServer(
            "collector", settings.collector_metrics_port, host=settings.collector_metrics_host
        )
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
