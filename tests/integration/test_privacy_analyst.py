"""Analyst access against the sinks' migrated tables: no cell below K through any analyst path, totals included.

Analyst paths: ``query_public`` (``csync usage`` reading the store), the sink's read endpoint (``csync usage``
while the sink runs), and SQL on ``app_daily_public`` under the role of ``deploy/clickhouse/analyst_role.sql``
(totals are whatever an analyst can sum from that view).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.client import Client

from csync.settings import PROJECT_ROOT, Settings
from privacy.retention import EXCEEDS, OK, clickhouse_rows
from privacy.suppression import AppTotal, Cell, Publication, disclosure, plan
from sinks.clickhouse_client import chdb_path_in_use, clickhouse_client
from sinks.migrate import migrate
from sinks.usage_read import query_public, read_app

pytestmark = pytest.mark.clickhouse

K = 10
DAY = dt.date(2026, 1, 5)
MINUTE = int(dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC).timestamp())
# (app, sub_app) -> student tokens; geometry (3) and b.org (9) are below K.
CELLS = {
    ("math", "fractions"): range(1, 13),
    ("math", "geometry"): range(101, 104),
    ("math", "algebra"): range(201, 216),
    ("web", "a.org"): range(1, 11),
    ("web", "b.org"): range(301, 310),
}
ROLE_SQL = PROJECT_ROOT / "deploy" / "clickhouse" / "analyst_role.sql"


@pytest.fixture
def chdb_url(clickhouse_url: str) -> str:
    """chDB allows one path per process: reuse the one another test module already opened, if any."""
    in_use = chdb_path_in_use()
    return f"chdb://{in_use}" if in_use else clickhouse_url


@pytest.fixture
def db(chdb_url: str, unique: str) -> Iterator[tuple[Client, str]]:
    client = clickhouse_client(chdb_url)
    name = f"usage_{unique}"
    migrate(client, name, ttl_days=730, k_anonymity=K)
    rows = [
        [MINUTE + i % 3 * 60, app, sub, token, 60_000, 0, n]
        for n, ((app, sub), tokens) in enumerate(CELLS.items())
        for i, token in enumerate(tokens)
    ]
    client.insert(
        f"{name}.app_minute_in",
        rows,
        column_names=[
            "minute",
            "app",
            "sub_app",
            "student_token",
            "active_ms",
            "src_partition",
            "src_offset",
        ],
    )
    yield client, name
    client.command(f"DROP DATABASE IF EXISTS {name}")


def _all_cells(client: Client, db: str) -> dict[str, list[Cell]]:
    """Every cell, as only an admin can see them (from app_minute)."""
    result = client.query(
        f"SELECT app, sub_app, toUInt64(uniqMerge(students)), sum(active_ms) / 1000 "
        f"FROM {db}.app_minute GROUP BY app, sub_app ORDER BY app, sub_app"
    )
    out: dict[str, list[Cell]] = {}
    for app, sub, students, seconds in result.result_rows:
        out.setdefault(app, []).append(Cell(sub, int(students), float(seconds)))
    return out


def test_no_analyst_path_shows_a_cell_below_k_or_a_total_that_recovers_one(
    db: tuple[Client, str],
) -> None:
    client, name = db
    truth = _all_cells(client, name)
    assert {c.sub_app for cells in truth.values() for c in cells if c.students < K} == {
        "geometry",
        "b.org",
    }

    rows = query_public(client, name, DAY, DAY)
    assert rows and all(r["students"] >= K for r in rows)
    published = {(r["app"], r["sub_app"]) for r in rows}
    assert published == {("math", "fractions"), ("math", "algebra"), ("web", "a.org")}

    # Totals an analyst can compute: sums over the public view only.
    totals = client.query(
        f"SELECT app, sum(active_seconds), groupArray(sub_app) FROM {name}.app_daily_public "
        f"WHERE day = %(d)s GROUP BY app",
        parameters={"d": DAY.isoformat()},
    ).result_rows
    for app, seconds, subs in totals:
        cells = truth[app]
        expected = plan(cells, K)
        assert expected.total == AppTotal(float(seconds), frozenset(subs))
        analyst_view = Publication(
            tuple(c for c in cells if (app, c.sub_app) in published), AppTotal(float(seconds), frozenset(subs)),
            frozenset(),
        )  # fmt: skip
        assert disclosure(cells, analyst_view, K) == []
        all_cells_total = sum(c.active_seconds for c in cells)
        assert (
            float(seconds) != all_cells_total
        )  # the total over all cells is not on any analyst path


async def test_the_sinks_read_endpoint_shows_no_cell_below_k(db: tuple[Client, str]) -> None:
    client, name = db
    async with TestClient(TestServer(read_app(client, name))) as http:
        resp = await http.get("/usage", params={"from": DAY.isoformat(), "to": DAY.isoformat()})
        rows = (await resp.json())["rows"]
    assert len(rows) == 3
    assert min(r["students"] for r in rows) >= K


def _statements(sql: str) -> list[str]:
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def test_analyst_role_sql_grants_select_on_the_public_view_only_and_parses(
    db: tuple[Client, str],
) -> None:
    client, name = db
    statements = _statements(ROLE_SQL.read_text())
    grants = [s for s in statements if re.match(r"GRANT\b", s, re.I)]
    assert grants == ["GRANT SELECT ON usage.app_daily_public TO usage_analyst"]
    assert any(re.match(r"REVOKE ALL ON \*\.\* FROM usage_analyst", s) for s in statements)
    for statement in statements:
        # chDB has no access control: check that every statement is valid ClickHouse SQL.
        client.command(f"EXPLAIN AST {statement.replace('usage.', f'{name}.')}")
    # The definer-rights change (needed for a view-only grant) really applies to the migrated view.
    client.command(f"ALTER TABLE {name}.app_daily_public MODIFY SQL SECURITY DEFINER")
    assert "SQL SECURITY DEFINER" in str(
        client.command(f"SHOW CREATE TABLE {name}.app_daily_public")
    )


def test_retention_reads_the_usage_ttl_from_the_table_ddl(
    db: tuple[Client, str], chdb_url: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    _client, name = db
    settings = make_settings(clickhouse_url=chdb_url, clickhouse_database=name)
    [row] = clickhouse_rows(settings)
    assert (row.status, row.actual) == (OK, "TTL 730d")
    [row] = clickhouse_rows(settings.replace(usage_ttl_days=365))
    assert row.status == EXCEEDS
