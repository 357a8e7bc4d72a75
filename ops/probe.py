"""The end-to-end probe: a synthetic student whose events must reach a teacher's view, measured.

Lag metrics say how far behind a consumer is; they cannot say whether an event sent now reaches Redis at all
(a producer that cannot produce, a worker that consumes but emits nothing, a Redis sink writing elsewhere).
Every ``interval_s`` the probe produces one ``app_focus`` event of :data:`~schemas.probe.PROBE_STUDENT` in the
reserved probe district to the activity topic — the path devices and the collector use — with a new
``sub_app`` each time (a change a teacher would see, so the worker emits it at once rather than on its
30-second refresh), then polls the student's Redis presence hash until that ``sub_app`` shows.

It exports ``csync_probe_latency_seconds`` (histogram), ``csync_probe_up`` (1 while the last probe arrived
within ``timeout_s``) and ``csync_probe_failures_total{stage}``. It is its own process, not part of the lag
monitor: the monitor only reads offsets and needs no Redis and no write access to the activity topic; the
probe needs both, and a probe stuck on a dead Redis must not blind the lag alerts.

The probe district's events count no usage and belong to no class (see :mod:`schemas.probe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer

from csync import metrics
from csync.kafka_client import producer_options
from csync.redis_client import AnyRedis, redis_client
from csync.settings import Settings
from schemas.probe import PROBE_DEVICE, PROBE_DISTRICT, PROBE_STUDENT

log = logging.getLogger(__name__)
POLL_S = 0.05


def probe_event(run: str, seq: int, now_ms: int) -> tuple[bytes, bytes, str]:
    """``(key, value, sub_app)`` of probe number ``seq`` of run ``run`` (CONTRACT §2 event)."""
    sub_app = f"probe-{run}-{seq}"
    event = {
        "v": 1, "event_id": f"probe-{run}-{seq}", "kind": "app_focus", "ts": now_ms,
        "district_id": PROBE_DISTRICT, "student_id": PROBE_STUDENT, "device_id": PROBE_DEVICE,
        "app": "csync-probe", "sub_app": sub_app,
    }  # fmt: skip
    return f"{PROBE_DISTRICT}:{PROBE_STUDENT}".encode(), orjson.dumps(event), sub_app


class Probe:
    """Sends probes and measures them; :meth:`run` until stopped."""

    def __init__(
        self,
        settings: Settings,
        interval_s: float = 5.0,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.run_id = uuid.uuid4().hex[:8]  # a restart never reuses an event id or a sub_app
        self.key = f"{settings.key_prefix}:presence:{PROBE_DISTRICT}:{PROBE_STUDENT}"
        self._producer: AIOKafkaProducer | None = None
        self._redis: AnyRedis | None = None
        self.last_ok = False

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            request_timeout_ms=int(self.timeout_s * 1000),
            **producer_options(self.settings),
        )
        await self._producer.start()
        self._redis = redis_client(self.settings)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def once(self, seq: int) -> float | None:
        """One probe: seconds until Redis showed it, or ``None`` (failed; counted by stage)."""
        if self._producer is None or self._redis is None:
            raise RuntimeError("Probe is not started")
        started = self.clock()
        key, value, sub_app = probe_event(self.run_id, seq, int(started * 1000))
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(self.settings.topic_activity, value, key=key),
                self.timeout_s,
            )
        except Exception as exc:
            log.warning("probe: produce failed: %s", type(exc).__name__)
            self._failed("produce")
            return None
        wanted = sub_app.encode()
        while self.clock() - started < self.timeout_s:
            with contextlib.suppress(Exception):  # Redis down: keep polling until the timeout
                if await self._redis.hget(self.key, "sub_app") == wanted:
                    return self._arrived(self.clock() - started)
            await asyncio.sleep(POLL_S)
        self._failed("timeout")
        return None

    def _arrived(self, seconds: float) -> float:
        metrics.PROBE_LATENCY.observe(seconds)
        metrics.PROBE_UP.set(1)
        self.last_ok = True
        return seconds

    def _failed(self, stage: str) -> None:
        metrics.PROBE_FAILURES.labels(stage).inc()
        metrics.PROBE_UP.set(0)
        self.last_ok = False
        return

    async def run(self, stop: asyncio.Event) -> None:
        """A probe every ``interval_s`` (from the start of the previous one) until ``stop`` is set."""
        seq = 0
        while not stop.is_set():
            began = self.clock()
            seq += 1
            await self.once(seq)
            wait = max(0.0, self.interval_s - (self.clock() - began))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
