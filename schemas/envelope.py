"""Cutting events into envelopes (CONTRACT §2a): in order, at most 1,000 events and 1 MiB each.

An envelope is its members' JSON joined: ``[`` + ``,``-joined members + ``]``. Every producer of
envelopes (the simulator's :class:`producers.envelopes.EnvelopeBuilder`, the collector, tests and
benchmarks) cuts with these functions, so a student's events stay in order and no envelope
exceeds the limits the decoder enforces.
"""

from __future__ import annotations

import orjson

from schemas.decoder import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_EVENTS, encode_event, event_object
from schemas.event import ActivityEvent


def envelope_end(encoded: list[bytes], start: int) -> int:
    """End of the envelope from ``start``: at most 1,000 members and 1 MiB (brackets, commas)."""
    end = min(len(encoded), start + MAX_ENVELOPE_EVENTS)
    if sum(map(len, encoded[start:end])) + (end - start) + 1 <= MAX_ENVELOPE_BYTES:
        return end
    size, end = 1, start  # rare: large members; "[" then each member and its "," or "]"
    while end < len(encoded) and (
        end == start or size + len(encoded[end]) + 1 <= MAX_ENVELOPE_BYTES
    ):
        size += len(encoded[end]) + 1
        end += 1
    return end


def join_envelope(parts: list[bytes]) -> bytes:
    """``[`` + ``,``-joined ``parts`` + ``]``, copying the big middle once, not three times.

    ``parts`` is consumed: its first and last items are replaced (pass a list you own).
    """
    if len(parts) == 1:
        return b"[" + parts[0] + b"]"
    parts[0] = b"[" + parts[0]
    parts[-1] += b"]"
    return b",".join(parts)


def cut_envelopes(encoded: list[bytes]) -> list[bytes]:
    """Envelopes of already-encoded members, in order."""
    out: list[bytes] = []
    start = 0
    while start < len(encoded):
        end = envelope_end(encoded, start)
        out.append(join_envelope(encoded[start:end]))
        start = end
    return out


def encode_envelopes(events: list[ActivityEvent]) -> list[bytes]:
    """Envelopes of ``events`` in order, each member as :func:`schemas.decoder.encode_event`
    writes it."""
    chunks: list[bytes] = []
    for start in range(0, len(events), MAX_ENVELOPE_EVENTS):
        part = events[start : start + MAX_ENVELOPE_EVENTS]
        # One orjson call per envelope: the same bytes as "[" + ",".join(encode_event(e)) + "]".
        value = _dumps(part)
        if len(value) <= MAX_ENVELOPE_BYTES:
            chunks.append(value)
        else:  # rare: large members; the rest is cut by size
            chunks.extend(cut_envelopes([encode_event(e) for e in events[start:]]))
            break
    return chunks


def _dumps(events: list[ActivityEvent]) -> bytes:
    """The JSON array of ``events`` in one orjson call (no limit checked)."""
    return orjson.dumps(
        [
            {"v": 1, "event_id": e[0], "kind": e[1], "ts": e[2], "district_id": e[3],
             "student_id": e[4], "device_id": e[5], "app": e[6], "sub_app": e[7]}
            if e[6] and e[7] else event_object(e)
            for e in events
        ]
    )  # fmt: skip
