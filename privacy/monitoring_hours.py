"""Monitoring hours: when a teacher view may show anything at all (pure rules plus the file that sets them).

A district sets school days, hours and its time zone (settings ``MONITORING_DAYS``, ``MONITORING_HOURS``,
``MONITORING_TIMEZONE``). An optional schedule file (``MONITORING_SCHEDULE_PATH``) overrides them per district
and narrows single classes to their periods::

    {"version": 1,
     "districts": {
       "d1": {"timezone": "America/Chicago", "days": "mon-fri", "hours": "07:30-15:30",
              "classes": {"c-101": ["mon,wed,fri 08:00-08:50", "tue,thu 09:00-10:20"]}}}}

A class with periods is open only during them; any other class of the district during the district's hours.
Outside them the teacher API answers "monitoring is off" and reads nothing from Redis (the caller's promise,
tested end to end). The same time zone decides what "today" is for the "no activity today" state.
Times are wall-clock local times; a range ends before its end minute (``08:00-08:50`` is open at 08:49:59).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from csync.settings import Settings

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MonitoringError(ValueError):
    """A monitoring-hours setting or schedule file that cannot be used; the message says which part."""


@dataclass(frozen=True, slots=True)
class Window:
    """Open on ``days`` (0 = Monday) from ``start`` to ``end`` minutes after local midnight."""

    days: frozenset[int]
    start: int
    end: int

    def contains(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return local.weekday() in self.days and self.start <= minute < self.end


@dataclass(frozen=True, slots=True)
class DistrictHours:
    """A district's time zone, school hours, and the periods of the classes that have them."""

    zone: ZoneInfo
    windows: tuple[Window, ...]
    classes: Mapping[str, tuple[Window, ...]] = field(default_factory=dict)

    def is_open(self, class_id: str, now: dt.datetime) -> bool:
        local = now.astimezone(self.zone)
        windows = self.classes.get(class_id, self.windows)
        return any(w.contains(local) for w in windows)

    def day_start_ms(self, now: dt.datetime) -> int:
        """Epoch ms of local midnight of ``now``'s day in the district."""
        local = now.astimezone(self.zone)
        midnight = dt.datetime(local.year, local.month, local.day, tzinfo=self.zone)
        return int(midnight.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class MonitoringHours:
    """The default hours and the districts the schedule file names."""

    default: DistrictHours
    districts: Mapping[str, DistrictHours] = field(default_factory=dict)

    def of(self, district_id: str) -> DistrictHours:
        return self.districts.get(district_id, self.default)

    def is_open(self, district_id: str, class_id: str, now: dt.datetime) -> bool:
        """May a teacher of ``district_id`` see ``class_id`` at ``now`` (an aware datetime)?"""
        return self.of(district_id).is_open(class_id, now)


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri`` / ``mon,wed,fri`` / ``sat-sun`` → weekday numbers (0 = Monday)."""
    out: set[int] = set()
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise MonitoringError(f"days must be like mon-fri or mon,wed,fri; got {text!r}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        if b < a:
            raise MonitoringError(f"day range {part!r} runs backwards")
        out.update(range(a, b + 1))
    if not out:
        raise MonitoringError("no school days given")
    return frozenset(out)


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """``07:30-12:00,12:30-15:30`` → ``[(450, 720), (750, 930)]`` minutes; ``24:00`` may end a range."""
    out: list[tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        start, sep, end = part.partition("-")
        if not sep:
            raise MonitoringError(f"hours must be like 07:30-15:30; got {part!r}")
        a, b = _minute(start), _minute(end)
        if not a < b:
            raise MonitoringError(f"hours {part!r} must end after they start")
        out.append((a, b))
    if not out:
        raise MonitoringError("no hours given")
    return out


def _minute(text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise MonitoringError(f"a time must be HH:MM; got {text!r}")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise MonitoringError(f"no such time of day: {text!r}")
    return value


def windows(days: str, hours: str) -> tuple[Window, ...]:
    """The windows of ``days`` × ``hours`` settings."""
    on = parse_days(days)
    return tuple(Window(on, a, b) for a, b in parse_ranges(hours))


def period(spec: str) -> tuple[Window, ...]:
    """One class period: ``"mon,wed,fri 08:00-08:50"``."""
    days, _, hours = spec.strip().partition(" ")
    if not hours:
        raise MonitoringError(f"a period must be like 'mon,wed,fri 08:00-08:50'; got {spec!r}")
    return windows(days, hours)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MonitoringError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True)
class Defaults:
    """The settings' days, hours and time zone, which a district of the schedule file may override."""

    days: str
    hours: str
    timezone: str

    def district(self) -> DistrictHours:
        return DistrictHours(zone(self.timezone), windows(self.days, self.hours))


def parse_schedule(raw: bytes, defaults: Defaults) -> dict[str, DistrictHours]:
    """The districts of a schedule file; what a district leaves out comes from ``defaults``."""
    try:
        doc: Any = orjson.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise MonitoringError("schedule file must be {'version': 1, 'districts': {...}}")
        return {str(d): _district(spec, defaults) for d, spec in doc["districts"].items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise MonitoringError(f"malformed schedule file: {type(exc).__name__}") from exc


def _district(spec: dict[str, Any], defaults: Defaults) -> DistrictHours:
    classes = {
        str(c): tuple(w for p in periods for w in period(p))
        for c, periods in dict(spec.get("classes", {})).items()
    }
    return DistrictHours(
        zone(spec.get("timezone", defaults.timezone)),
        windows(spec.get("days", defaults.days), spec.get("hours", defaults.hours)),
        classes,
    )


def monitoring_hours(settings: Settings) -> MonitoringHours:
    """The monitoring hours of these settings (and of the schedule file, when one is set)."""
    defaults = Defaults(
        settings.monitoring_days, settings.monitoring_hours, settings.monitoring_timezone
    )
    if not settings.monitoring_schedule_path:
        return MonitoringHours(defaults.district())
    path = Path(settings.monitoring_schedule_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MonitoringError(f"cannot read the schedule file {path}: {exc.strerror}") from exc
    return MonitoringHours(defaults.district(), parse_schedule(raw, defaults))


@dataclass(slots=True)
class LiveHours:
    """The monitoring hours of the settings, following the schedule file as the district edits it.

    The file is re-read when its inode, size or mtime change, so a new term's periods apply without a
    restart. A file that becomes unreadable or malformed closes monitoring everywhere until it is fixed
    (failing closed: a teacher briefly sees nothing rather than a class outside its hours); the error is
    logged once and kept in :attr:`problem`.
    """

    settings: Settings
    problem: str = ""
    _hours: MonitoringHours | None = None
    _stamp: tuple[int, int, int] | None = None

    def current(self) -> MonitoringHours:
        path = self.settings.monitoring_schedule_path
        if self._hours is not None and not path:
            return self._hours
        try:
            st = Path(path).stat() if path else None
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size) if st else None
            if self._hours is None or stamp != self._stamp:
                self._hours, self._stamp, self.problem = monitoring_hours(self.settings), stamp, ""
        except (OSError, MonitoringError) as exc:
            problem = str(exc) if isinstance(exc, MonitoringError) else "schedule file missing"
            if problem != self.problem:
                log.error("monitoring is off everywhere until the schedule is fixed: %s", problem)
            self.problem = problem
            zone_ = zone(self.settings.monitoring_timezone)
            self._hours, self._stamp = MonitoringHours(DistrictHours(zone_, ())), None
        return self._hours

    def of(self, district_id: str) -> DistrictHours:
        return self.current().of(district_id)

    def is_open(self, district_id: str, class_id: str, now: dt.datetime) -> bool:
        return self.current().is_open(district_id, class_id, now)
