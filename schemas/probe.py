"""The end-to-end probe's reserved district: an id no real district can have.

``csync probe`` sends a synthetic student's events under :data:`PROBE_DISTRICT`. Every id starting with
:data:`RESERVED_DISTRICT_PREFIX` is reserved: the places that create a district's identity — collector
tokens, teacher tokens, roster loads — refuse it (:func:`check_real_district`), so no device can send for it
through the collector, no teacher can hold a token for it and no class of it is loaded. The worker keeps its
presence (what the probe measures) and attributes no usage for it (:func:`is_probe_district`), so analysts'
rollups never hold a probe second.
"""

from __future__ import annotations

RESERVED_DISTRICT_PREFIX = "_csync-probe"
PROBE_DISTRICT = RESERVED_DISTRICT_PREFIX
PROBE_STUDENT = "probe-student"
PROBE_DEVICE = "probe-device"


class ReservedDistrictError(ValueError):
    """A real district was given an id of the probe's reserved range."""


def is_probe_district(district_id: str) -> bool:
    """Whether ``district_id`` is reserved for the probe (its events count no usage)."""
    return district_id.startswith(RESERVED_DISTRICT_PREFIX)


def check_real_district(district_id: str) -> None:
    """Raise :class:`ReservedDistrictError` for an id of the probe's reserved range."""
    if is_probe_district(district_id):
        raise ReservedDistrictError(
            f"district ids starting with {RESERVED_DISTRICT_PREFIX!r} are reserved for the "
            "end-to-end probe"
        )
