"""A live district whose devices report through the collector over HTTP, as real devices do.

The simulator replays a compressed school day straight into Kafka; this district instead runs in real time
(event time = now) and posts its events to ``csync collector`` in batches, with its district's bearer token.
It shows the device path end to end, and its students' presence follows the contract's timeout exactly.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson

from producers.simulator_model import SimItem, SimulationConfig, Student
from producers.simulator_wire import wire_object
from schemas.event import ActivityEvent

BATCH = 500


class CollectorFleet(threading.Thread):
    """Posts the events of ``students`` whose time has come, once a second, until :meth:`stop`."""

    def __init__(
        self, port: int, token: str, config: SimulationConfig, students: list[Student]
    ) -> None:
        super().__init__(name="collector-fleet", daemon=True)
        self.url = f"http://127.0.0.1:{port}/v1/events"
        self.token = token
        self.config = config
        self.students = students
        self.accepted = 0
        self.rejected = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        from producers.simulator_model import ActivityGenerator

        items: Iterator[SimItem] = ActivityGenerator(
            self.config, self.students, int(time.time() * 1000) - 5_000
        ).items()
        pending: SimItem | None = None
        while not self._halt.wait(1.0):
            now_ms = int(time.time() * 1000)
            due: list[SimItem] = []
            while True:
                item = pending if pending is not None else next(items)
                pending = None
                if isinstance(item, ActivityEvent) and item.ts > now_ms:
                    pending = item
                    break
                due.append(item)
            for start in range(0, len(due), BATCH):
                self._post(due[start : start + BATCH])

    def _post(self, items: list[SimItem]) -> None:
        body = orjson.dumps([wire_object(i) for i in items])
        request = urllib.request.Request(  # noqa: S310 - loopback http
            self.url,
            data=body,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                answer = orjson.loads(response.read())
            self.accepted += int(answer.get("accepted", 0))
            self.rejected += int(answer.get("rejected", 0))
        except (OSError, ValueError) as exc:
            self.errors.append(f"collector: {exc}")
            del self.errors[:-5]
