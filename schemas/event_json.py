"""A valid event as the v1 JSON of CONTRACT §2 (``app``/``sub_app`` omitted when empty): what producers send
and what the decoder gives back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from schemas.event import ActivityEvent


def event_object(event: ActivityEvent) -> dict[str, Any]:
    """The v1 JSON object of a valid event (``app``/``sub_app`` omitted when empty)."""
    obj: dict[str, Any] = {
        "v": 1,
        "event_id": event.event_id,
        "kind": event.kind,
        "ts": event.ts,
        "district_id": event.district_id,
        "student_id": event.student_id,
        "device_id": event.device_id,
    }
    if event.app:
        obj["app"] = event.app
    if event.sub_app:
        obj["sub_app"] = event.sub_app
    return obj


def encode_event(event: ActivityEvent) -> bytes:
    """The v1 JSON of a valid event. Decodes back to ``event``."""
    return orjson.dumps(event_object(event))


def encode_envelope(events: Iterable[ActivityEvent]) -> bytes:
    """An envelope (CONTRACT §2a) of ``events``; the caller keeps it to 1,000 events and 1 MiB."""
    return orjson.dumps([event_object(e) for e in events])
