"""Settings travel to child processes as environment variables and come back unchanged."""

from __future__ import annotations

import dataclasses

from csync.settings import Settings


def test_to_env_round_trips_every_field() -> None:
    # Every field away from its default, so a field missing from to_env() (or parsed back wrongly)
    # would come back as its default and fail the comparison.
    base = Settings()
    changed = {}
    for f in dataclasses.fields(base):
        value = getattr(base, f.name)
        if isinstance(value, bool):
            changed[f.name] = not value
        elif isinstance(value, int | float):
            changed[f.name] = value * 2 + 1
        elif f.name == "clickhouse_url":
            changed[f.name] = "chdb:///tmp/other"
        elif f.name == "kafka_security_protocol":
            changed[f.name] = "SASL_SSL"
        elif f.name == "kafka_sasl_mechanism":
            changed[f.name] = "SCRAM-SHA-512"
        elif isinstance(value, str):
            changed[f.name] = value + "x" if value else "set"
    settings = base.replace(**changed)
    assert set(changed) == {f.name for f in dataclasses.fields(base)}
    env = settings.to_env()
    assert set(env) == {f.name.upper() for f in dataclasses.fields(base)}
    assert Settings.from_env(env) == settings
