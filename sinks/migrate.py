"""Versioned ClickHouse migrations for the usage database (CONTRACT §5).

``sinks/migrations/NNN_name.sql`` files run once each, in order, and are recorded in
``{db}.schema_migrations``. They may use ``{db}`` and ``{ttl_days}``; statements are separated by ``;`` at the end
of a line. Every run of :func:`migrate` then reconciles the objects that follow settings rather than history:

- the TTL of ``app_minute`` (``USAGE_TTL_DAYS``), altered when it differs;
- the analysts' view ``app_daily_public``, recreated with the current ``K_ANONYMITY``.

``migrate`` is idempotent and runs as a provisioning step, ``csync clickhouse migrate``, before the ClickHouse
sink, which only checks that every migration was applied (with chDB the sink owns the data path, so the command
runs while the sink is stopped).

If the usage-cells topic is ever recreated (offsets start again at 0), empty ``{db}.sink_progress`` with
``TRUNCATE TABLE`` before starting the sink, or it will skip the new topic's first records as already written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned migration file."""

    version: int
    name: str
    sql: str

    def statements(self, db: str, ttl_days: int) -> list[str]:
        """The file's statements with ``{db}`` and ``{ttl_days}`` filled in."""
        text = self.sql.replace("{db}", db).replace("{ttl_days}", str(int(ttl_days)))
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
        return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def load_migrations() -> list[Migration]:
    """All migration files shipped in ``sinks/migrations``, by version."""
    found: list[Migration] = []
    for entry in resources.files("sinks.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


def daily_public_view_sql(db: str, k_anonymity: int) -> str:
    """The analysts' view: daily cells ``(day, app, sub_app)`` with at least ``k_anonymity`` students.

    ``students`` is the distinct count over the day; student tokens change every UTC day, so a day is the
    widest window over which they can be counted, and the narrowest the analysts get.

    ``SQL SECURITY DEFINER``: on a ClickHouse server the analyst role is granted SELECT on this view only
    (deploy/clickhouse/analyst_role.sql); the view reads ``app_minute`` with its definer's rights, so the
    raw table never has to be granted.
    """
    return f"""
CREATE OR REPLACE VIEW {db}.app_daily_public
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT day, app, sub_app, active_seconds, students
FROM
(
    SELECT
        toDate(minute) AS day,
        app,
        sub_app,
        toFloat64(sum(active_ms)) / 1000 AS active_seconds,
        toUInt64(uniqMerge(students)) AS students
    FROM {db}.app_minute
    GROUP BY day, app, sub_app
)
WHERE students >= {int(k_anonymity)}
"""  # noqa: S608 - db is a checked identifier, k an int


def check_identifier(name: str) -> str:
    """``name`` if it is a plain ClickHouse identifier (we splice it into DDL), else ValueError."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def migrate(client: Client, db: str, *, ttl_days: int, k_anonymity: int) -> list[int]:
    """Bring ``db`` to the latest schema and reconcile settings-derived objects; return versions applied."""
    db = check_identifier(db)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime('UTC') DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {
        int(r[0])
        for r in client.query(f"SELECT version FROM {db}.schema_migrations").result_rows  # noqa: S608
    }
    applied: list[int] = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        log.info("applying migration %03d_%s to %s", migration.version, migration.name, db)
        for statement in migration.statements(db, ttl_days):
            client.command(statement)
        client.insert(
            f"{db}.schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        applied.append(migration.version)
    _reconcile_ttl(client, db, ttl_days)
    client.command(daily_public_view_sql(db, k_anonymity))
    return applied


def _reconcile_ttl(client: Client, db: str, ttl_days: int) -> None:
    ddl = str(client.command(f"SHOW CREATE TABLE {db}.app_minute"))
    want = f"toIntervalDay({int(ttl_days)})"
    if want not in ddl.replace(" ", ""):
        log.info("setting TTL of %s.app_minute to %d days", db, ttl_days)
        client.command(
            f"ALTER TABLE {db}.app_minute MODIFY TTL minute + INTERVAL {int(ttl_days)} DAY"
        )
