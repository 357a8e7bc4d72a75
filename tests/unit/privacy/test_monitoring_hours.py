"""Monitoring hours (pure rules): days, hours, time zones, per-class periods, "today", bad input."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from csync.settings import Settings
from privacy.monitoring_hours import (
    Defaults,
    LiveHours,
    MonitoringError,
    monitoring_hours,
    parse_days,
    parse_ranges,
    parse_schedule,
)

UTC = dt.UTC
# 2026-12-07 is a Monday.
MON_0800_UTC = dt.datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def hours_of(**changes: str) -> Settings:
    return Settings.from_env(env={}, **changes)


def test_days_and_ranges_parse_and_bad_ones_are_refused() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("mon,wed, fri") == frozenset({0, 2, 4})
    assert parse_days("sat-sun") == frozenset({5, 6})
    assert parse_ranges("07:30-12:00,12:30-15:30") == [(450, 720), (750, 930)]
    assert parse_ranges("00:00-24:00") == [(0, 1440)]
    for bad in ("", "fri-mon", "monday", "mon-xyz"):
        with pytest.raises(MonitoringError):
            parse_days(bad)
    for bad in ("", "8-9", "09:00-08:00", "07:60-08:00", "07:00-24:01", "07:00"):
        with pytest.raises(MonitoringError):
            parse_ranges(bad)


def test_open_on_school_days_within_hours_only() -> None:
    hours = monitoring_hours(hours_of(monitoring_days="mon-fri", monitoring_hours="07:30-15:30"))
    assert hours.is_open("d1", "c-1", MON_0800_UTC)
    assert not hours.is_open("d1", "c-1", MON_0800_UTC.replace(hour=7, minute=29))
    assert hours.is_open("d1", "c-1", MON_0800_UTC.replace(hour=15, minute=29, second=59))
    assert not hours.is_open("d1", "c-1", MON_0800_UTC.replace(hour=15, minute=30))
    assert not hours.is_open("d1", "c-1", MON_0800_UTC - dt.timedelta(days=1))  # Sunday


def test_the_district_time_zone_decides_the_hour_and_the_day() -> None:
    hours = monitoring_hours(
        hours_of(monitoring_hours="08:00-15:00", monitoring_timezone="America/Chicago")
    )
    # 08:00 UTC is 02:00 in Chicago: closed; 14:00 UTC is 08:00 there: open.
    assert not hours.is_open("d1", "c-1", MON_0800_UTC)
    assert hours.is_open("d1", "c-1", MON_0800_UTC.replace(hour=14))
    # Monday 03:00 UTC is still Sunday evening in Chicago: not a school day.
    assert not hours.is_open("d1", "c-1", MON_0800_UTC.replace(hour=3))
    start = hours.of("d1").day_start_ms(MON_0800_UTC.replace(hour=14))
    assert start == int(dt.datetime(2026, 12, 7, 6, 0, tzinfo=UTC).timestamp() * 1000)


def test_a_schedule_file_sets_districts_and_narrows_classes_to_their_periods(
    tmp_path: Path,
) -> None:
    path = tmp_path / "schedule.json"
    path.write_bytes(orjson.dumps({"version": 1, "districts": {
        "d2": {"timezone": "Europe/Berlin", "hours": "08:00-13:00",
               "classes": {"c-7": ["mon,wed 09:00-09:45", "fri 10:00-11:00"]}}}}))  # fmt: skip
    hours = monitoring_hours(
        hours_of(monitoring_schedule_path=str(path), monitoring_hours="07:00-17:00")
    )
    berlin_0915 = MON_0800_UTC  # 09:00 in Berlin (UTC+1 in December)
    assert hours.is_open("d2", "c-7", berlin_0915)
    assert hours.is_open("d2", "c-1", berlin_0915)  # other classes: the district's hours
    assert not hours.is_open("d2", "c-7", berlin_0915 + dt.timedelta(minutes=45))
    assert hours.is_open("d2", "c-1", berlin_0915 + dt.timedelta(minutes=45))
    assert not hours.is_open("d2", "c-7", berlin_0915 + dt.timedelta(days=1))  # Tuesday
    assert not hours.is_open("d2", "c-1", MON_0800_UTC.replace(hour=12, minute=30))  # 13:30 there
    # Districts the file does not name keep the settings: 12:30 UTC is open for d1.
    assert hours.is_open("d1", "c-7", MON_0800_UTC.replace(hour=12, minute=30))


def test_bad_schedules_and_settings_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    defaults = Defaults("mon-fri", "07:00-17:00", "UTC")
    for raw, words in [
        (b"{", "malformed"),
        (b'{"version": 2, "districts": {}}', "version"),
        (b'{"version": 1, "districts": {"d1": {"timezone": "Mars/Base"}}}', "time zone"),
        (b'{"version": 1, "districts": {"d1": {"classes": {"c-1": ["09:00-10:00"]}}}}', "period"),
    ]:
        with pytest.raises(MonitoringError, match=words):
            parse_schedule(raw, defaults)
    with pytest.raises(MonitoringError, match="time zone"):
        monitoring_hours(hours_of(monitoring_timezone="Nowhere/Town"))
    with pytest.raises(MonitoringError, match="cannot read"):
        monitoring_hours(hours_of(monitoring_schedule_path=str(tmp_path / "missing.json")))


def test_live_hours_follow_the_schedule_file_and_fail_closed(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"

    def write(hours: str) -> None:
        path.write_bytes(orjson.dumps({"version": 1, "districts": {"d1": {"hours": hours}}}))

    write("07:00-09:00")
    live = LiveHours(hours_of(monitoring_schedule_path=str(path)))
    assert live.is_open("d1", "c-1", MON_0800_UTC)
    write("10:00-12:00,13:00-14:00")  # a new term (another size: mtime can be coarse)
    assert not live.is_open("d1", "c-1", MON_0800_UTC)
    assert live.is_open("d1", "c-1", MON_0800_UTC.replace(hour=11))
    path.write_text("{ broken")
    assert not live.is_open("d1", "c-1", MON_0800_UTC.replace(hour=11))
    assert not live.is_open("d2", "c-1", MON_0800_UTC)  # every district, not only d1
    assert "malformed" in live.problem
    write("07:00-09:00")
    assert live.is_open("d1", "c-1", MON_0800_UTC) and live.problem == ""
