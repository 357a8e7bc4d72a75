"""The analysts' read API against the real pipeline: numbers equal the truth, nothing below K, ever.

One pipeline run (three simulated days through Kafka, a worker and the sinks into chDB) is shared by the
module; ``csync analyst-api`` runs as its own process over the ClickHouse sink's read endpoint.

What is proven:
- every number of every endpoint equals the simulator's truth summed over the public view's rule (daily cells
  with at least K distinct students), for whole and partial ranges, app and category filters;
- over random ranges and filters (a seeded sample): no response — JSON, CSV or the dashboard's HTML — holds a
  student figure below K or a cell the public view does not; and subtracting one response's total from another's
  (nested ranges, top-N vs total, category vs its apps) yields exactly a sum of published cells, never the
  total that would include a suppressed cell;
- no token → 401; a revoked token → 401; every query is on the audit trail; the scheduled export writes the
  period's cells.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyst.catalog import parse_catalog
from csync import stack as local_stack
from privacy.audit import AuditLog
from tests.integration.analyst_world import CATALOG, K, World, start_world, stop_world
from tests.integration.e2e_harness import ROOT, process_env

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]
STUDENT_FIGURES = ("students", "student_days", "peak_daily_students", "median_daily_students")
Key = tuple[str, str, str]


@pytest.fixture(scope="module")
def world(
    local_services: local_stack.Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    started = start_world(local_services, tmp_path_factory.mktemp("analyst"))
    try:
        yield started
    finally:
        stop_world(started)


# --- the reference: the truth's published cells, summed by a rule written here, independently


def chosen(world: World, q: dict[str, str], published: bool = True) -> dict[Key, tuple[float, int]]:
    catalog = parse_catalog(CATALOG)
    cells = world.public() if published else world.cells
    return {
        key: v
        for key, v in cells.items()
        if q["from"] <= key[0] <= q["to"]
        and (not q.get("app") or key[1] == q["app"])
        and (not q.get("category") or catalog.entry_for(key[1], key[2]).category == q["category"])
    }


def summary(cells: dict[Key, tuple[float, int]]) -> dict[str, Any]:
    peaks: dict[str, int] = defaultdict(int)
    for (day, _a, _s), (_sec, n) in cells.items():
        peaks[day] = max(peaks[day], n)
    return {
        "active_seconds": sum(sec for sec, _n in cells.values()),
        "student_days": sum(n for _sec, n in cells.values()),
        "peak_daily_students": max(peaks.values(), default=0),
        "days": len(peaks),
    }


def same(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    for name, value in want.items():
        assert abs(got[name] - value) < 1e-3, f"{where}: {name} {got[name]} != truth {value}"


def group(cells: dict[Key, tuple[float, int]], by: Any) -> dict[str, dict[Key, tuple[float, int]]]:
    out: dict[str, dict[Key, tuple[float, int]]] = defaultdict(dict)
    for key, v in cells.items():
        out[by(key)][key] = v
    return out


def check_query(world: World, q: dict[str, str]) -> list[float]:
    """Compare every endpoint for ``q`` with the truth; the seconds totals seen (for subtraction)."""
    catalog = parse_catalog(CATALOG)
    want = chosen(world, q)
    daily = world.json("/v1/usage/daily", **q)
    got = {
        (r["day"], r["app"], r["sub_app"]): (r["active_seconds"], r["students"])
        for r in daily["rows"]
    }
    assert set(got) == set(want), f"{q}: cells differ from the truth's published cells"
    for key, (sec, n) in want.items():
        assert got[key][1] == n and abs(got[key][0] - sec) < 1e-6, key
    same(daily["total"], summary(want), f"{q} daily total")
    totals = [daily["total"]["active_seconds"]]
    for kind, by in (("apps", lambda k: k[1]), ("sites", lambda k: k[2])):
        mine = {k: v for k, v in want.items() if (k[1] == "web") == (kind == "sites")}
        top = world.json("/v1/usage/top", kind=kind, n="1000", **q)
        same(top["total"], summary(mine), f"{q} top {kind} total")
        groups = group(mine, by)
        assert {r["name"] for r in top["rows"]} == set(groups)
        for r in top["rows"]:
            same(r, summary(groups[r["name"]]), f"{q} top {kind} {r['name']}")
        top3 = world.json("/v1/usage/top", kind=kind, n="3", **q)
        assert top3["rows"] == top["rows"][:3] and top3["total"] == top["total"]
        totals += [top["total"]["active_seconds"], *(r["active_seconds"] for r in top["rows"])]
    for bucket in ("day", "week", "month"):
        trend = world.json("/v1/usage/trend", bucket=bucket, **q)
        assert sum(r["active_seconds"] for r in trend["rows"]) == pytest.approx(
            summary(want)["active_seconds"]
        )
        if bucket == "day":
            days = group(want, lambda k: k[0])
            assert [r["bucket"] for r in trend["rows"]] == sorted(days)
            for r in trend["rows"]:
                same(r, summary(days[r["bucket"]]), f"{q} trend {r['bucket']}")
    cats = world.json("/v1/reports/categories", **q)["rows"]
    by_cat = group(want, lambda k: catalog.entry_for(k[1], k[2]).category)
    assert {r["category"] for r in cats} == set(by_cat)
    for r in cats:
        same(r, summary(by_cat[r["category"]]), f"{q} category {r['category']}")
        totals.append(r["active_seconds"])
    return totals


def test_every_number_equals_the_truth_over_the_public_rule(world: World) -> None:
    first, last = world.days[0].isoformat(), world.days[-1].isoformat()
    assert len(world.days) >= 3
    suppressed = {k for k, (_s, n) in world.cells.items() if n < K}
    assert world.public() and suppressed, "both sides of K must be exercised"
    assert {"web"} == {
        k[1] for k in world.public() if k[2] == "khanacademy.org"
    }  # a published site
    assert any(k[1] == "web" for k in suppressed)  # and a suppressed one beside it
    ranges = [{"from": first, "to": last}, {"from": first, "to": world.days[1].isoformat()}]
    ranges += [{"from": d.isoformat(), "to": d.isoformat()} for d in world.days]
    for q in ranges:
        check_query(world, q)
    whole = ranges[0]
    check_query(world, {**whole, "app": "web"})
    check_query(world, {**whole, "category": "Math"})
    check_query(world, {**whole, "category": "uncatalogued"})
    # Catalog reports: licences from the daily largest cell, never-used entries, unapproved in use.
    licenses = {r["name"]: r for r in world.json("/v1/reports/licenses", **whole)["rows"]}
    assert set(licenses) == {e.name for e in parse_catalog(CATALOG).entries if e.licenses}
    for name, app in (("Math Quest", "math-quest"), ("IXL", "ixl"), ("Tynker", "tynker")):
        mine = {k: v for k, v in chosen(world, whole).items() if k[1] == app}
        peak = summary(mine)["peak_daily_students"]
        assert licenses[name]["peak_daily_students"] == peak
        assert licenses[name]["peak_utilisation"] == pytest.approx(
            peak / licenses[name]["licenses"], abs=1e-4
        )
    assert licenses["Legacy Reader"]["peak_daily_students"] == 0
    unused = {r["name"] for r in world.json("/v1/reports/unused", **whole)["rows"]}
    assert "Legacy Reader" in unused
    status = {r["name"]: r["status"] for r in world.json("/v1/reports/unapproved", **whole)["rows"]}
    assert status and set(status.values()) <= {"unapproved", "not in catalog"}
    assert all(status.get(n) is None for n in ("Docs", "IXL", "Khan Academy"))
    # CSV is the same rows as JSON.
    status_code, body = world.get("/v1/usage/daily", {**whole, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert status_code == 200 and len(rows) == len(chosen(world, whole))
    assert all(int(r["students"]) >= K for r in rows)


def _csv_figures(body: bytes) -> list[tuple[str, float]]:
    """Student figures of a CSV answer (the dashboard's has one block per table, blank-line separated)."""
    found = []
    for block in body.decode().split("\n\n"):
        for row in csv.DictReader(io.StringIO(block)):
            found += [(k, float(v)) for k, v in row.items() if k in STUDENT_FIGURES and v]
    return found


def _numbers_in(world: World, q: dict[str, str]) -> list[tuple[str, float]]:
    """``(column, value)`` of every figure of every response for ``q``: JSON, CSV and the HTML page."""
    found: list[tuple[str, float]] = []

    def walk(value: Any, name: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, name)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append((name, float(value)))

    paths = ["/v1/usage/daily", "/v1/usage/top", "/v1/usage/trend", "/v1/dashboard",
             *(f"/v1/reports/{r}" for r in ("categories", "licenses", "unapproved", "unused"))]  # fmt: skip
    for path in paths:
        walk(world.json(path, **q))
        status, body = world.get(path, {**q, "format": "csv"})
        assert status == 200
        found += _csv_figures(body)
    status, body = world.get("/v1/dashboard.csv", q)
    assert status == 200 and body == world.get("/v1/dashboard", {**q, "format": "csv"})[1]
    status, page = world.get("/", q)
    assert status == 200 and b"Usage dashboard" in page
    found += [
        (c, float(v))
        for c, v in re.findall(r'data-col="(\w+)" data-value="([-0-9.e]+)"', page.decode())
    ]
    return found


def test_no_response_shows_a_cell_below_k_or_a_difference_that_recovers_one(world: World) -> None:
    """Random ranges and filters (seeded): every figure from published cells, differences included."""
    rng = random.Random(16)
    days = [
        world.days[0] - dt.timedelta(days=1),
        *world.days,
        world.days[-1] + dt.timedelta(days=1),
    ]
    apps = sorted({k[1] for k in world.cells})
    categories = [*parse_catalog(CATALOG).categories(), "uncatalogued"]
    for _ in range(10):
        a, b = sorted(rng.sample(range(len(days)), 2))
        q = {"from": days[a].isoformat(), "to": days[b].isoformat()}
        if rng.random() < 0.3:
            q["app"] = rng.choice(apps)
        if rng.random() < 0.3:
            q["category"] = rng.choice(categories)
        figures = _numbers_in(world, q)
        low = [(c, v) for c, v in figures if c in STUDENT_FIGURES and 0 < v < K]
        assert not low, f"{q}: student figures below K: {low[:5]}"
        check_query(world, q)
        # Nested range: the outer total minus the inner one is exactly the published cells between them,
        # and differs from what it would be with the suppressed cells of that difference counted in.
        inner = {**q, "from": days[rng.randint(a, b)].isoformat()}
        inner["to"] = max(inner["from"], q["to"])
        outer_total = world.json("/v1/usage/daily", **q)["total"]["active_seconds"]
        inner_total = world.json("/v1/usage/daily", **inner)["total"]["active_seconds"]
        between = {k: v for k, v in chosen(world, q).items() if k not in chosen(world, inner)}
        hidden = {k: v for k, v in chosen(world, q, published=False).items()
                  if k not in chosen(world, inner, published=False) and v[1] < K}  # fmt: skip
        difference = outer_total - inner_total
        assert difference == pytest.approx(summary(between)["active_seconds"], abs=1e-3)
        if summary(hidden)["active_seconds"] > 0.01:
            with_hidden = summary(between)["active_seconds"] + summary(hidden)["active_seconds"]
            assert abs(difference - with_hidden) > 1e-3
    # Per day and per (day, app): the total beside the cells is the cells' sum (nothing left to subtract),
    # never the total over every cell when some were suppressed.
    checked = 0
    for day in world.days:
        q = {"from": day.isoformat(), "to": day.isoformat()}
        for app in [None, *apps]:
            every = {
                k: v for k, v in world.cells.items() if k[0] == q["from"] and app in (None, k[1])
            }
            small = [v for v in every.values() if v[1] < K]
            if not small or all(v[1] < K for v in every.values()):
                continue
            daily = world.json("/v1/usage/daily", **q, **({"app": app} if app else {}))
            assert daily["total"]["active_seconds"] == pytest.approx(
                sum(r["active_seconds"] for r in daily["rows"])
            )
            assert abs(daily["total"]["active_seconds"] - sum(v[0] for v in every.values())) > 1e-3
            checked += 1
    assert checked > 0


def test_tokens_are_required_revocable_and_every_query_is_audited(world: World) -> None:
    q = {"from": world.days[0].isoformat(), "to": world.days[-1].isoformat()}
    status, _ = world.get("/v1/usage/daily", q, token="not-a-token")  # noqa: S106
    assert status == 401
    env = process_env(world.settings)
    run = [sys.executable, "-m", "csync.cli", "analyst-token"]
    other = subprocess.run([*run, "add", "a-leaving"], env=env, cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()  # fmt: skip
    assert world.get("/v1/usage/top", q, token=other)[0] == 200
    subprocess.run(
        [*run, "revoke", "a-leaving"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    assert world.get("/v1/usage/top", q, token=other)[0] == 401
    log = AuditLog.from_settings(world.settings)
    entries = list(log.entries())
    assert log.verify_chain() == len(entries)
    leaving = [
        e for e in entries if e["who"] == "analyst:a-leaving" and e["action"] == "analyst.query"
    ]
    assert [e["target"] for e in leaving] == [f"/v1/usage/top {q['from']}..{q['to']}"]
    assert any(
        e["action"] == "analyst_token.revoke" and e["target"] == "a-leaving" for e in entries
    )
    text = "".join(p.read_text() for p in log.files())
    assert other not in text and world.token not in text


def test_the_scheduled_export_writes_the_period_of_the_real_view(
    world: World, tmp_path: Path
) -> None:
    yesterday = world.days[-2]
    env = process_env(world.settings, clickhouse_url=f"chdb://{world.pipeline.chdb_path}",
                      usage_read_port=world.pipeline.usage_read_port)  # fmt: skip
    command = [sys.executable, "-m", "csync.cli", "usage", "export", "--period", "daily", "--to", str(tmp_path),
               "--as-of", (yesterday + dt.timedelta(days=1)).isoformat()]  # fmt: skip
    first = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    folder = tmp_path / f"daily-{yesterday.isoformat()}"
    assert str(folder) in first.stdout
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    rows = list(csv.DictReader(io.StringIO((folder / "daily.csv").read_text())))
    want = chosen(world, {"from": yesterday.isoformat(), "to": yesterday.isoformat()})
    got = {
        (r["day"], r["app"], r["sub_app"]): (float(r["active_seconds"]), int(r["students"]))
        for r in rows
    }
    assert set(got) == set(want) and want
    for key, (seconds, students) in want.items():
        assert got[key][1] == students and abs(got[key][0] - seconds) < 1e-6, key
    second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads((folder / "MANIFEST.json").read_text())["files"] == manifest["files"], (
        second.stdout
    )
    assert "<script" not in (folder / "index.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


# --- the dashboard in a real browser


async def _table(page: Any, table_id: str) -> list[dict[str, float | str]]:
    cells = await page.eval_on_selector_all(
        f"table#{table_id} tbody tr",
        """trs => trs.map(tr => Array.from(tr.querySelectorAll('td'))
            .filter(td => td.dataset.col)
            .map(td => [td.dataset.col, td.getAttribute('data-value'), td.innerText.trim()]))""",
    )
    rows = []
    for tr in cells:
        row: dict[str, float | str] = {
            column: float(value) if value is not None else text for column, value, text in tr
        }
        if row:
            rows.append(row)
    return rows


async def _tables_match_the_api(world: World, page: Any, q: dict[str, str]) -> None:
    data = world.json("/v1/dashboard", **q)
    pairs = (("top-apps", data["top_apps"]["rows"]), ("top-sites", data["top_sites"]["rows"]),
             ("categories", data["categories"]), ("trend", data["trend"]), ("licenses", data["licenses"]))  # fmt: skip
    for table_id, want in pairs:
        got = await _table(page, table_id)
        assert len(got) == len(want), (
            f"{table_id}: {len(got)} rows on screen, {len(want)} from the API"
        )
        for shown, api in zip(got, want, strict=True):
            for column, value in shown.items():
                expected = api[column]
                if isinstance(value, float):
                    assert value == pytest.approx(expected), f"{table_id}.{column}"
                else:
                    assert value == ("–" if expected is None else str(expected)), (
                        f"{table_id}.{column}"
                    )


@pytest.mark.browser
async def test_the_dashboard_in_chromium_matches_the_api_and_downloads_its_csv(
    world: World, tmp_path: Path
) -> None:
    from tests.browser import chromium

    async with chromium() as browser:
        context = await browser.new_context(
            viewport={"width": 1280, "height": 2000}, accept_downloads=True
        )
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        await page.goto(world.base_url + "/")
        assert page.url.endswith("/login")
        await page.fill("#token", world.token)
        await page.click("form[action='/login'] button")
        await page.wait_for_selector("#range", timeout=30_000)
        assert world.token not in page.url and "token" not in page.url
        cookies = await context.cookies()
        assert [c["httpOnly"] for c in cookies] == [True] and cookies[0]["sameSite"] == "Strict"
        # The "last 7 days" preset fills the range from the page's today and reloads.
        today = world.days[-1]
        week_from = f"from={(today - dt.timedelta(days=6)).isoformat()}"
        await page.click("button[data-preset='7']")
        await page.wait_for_url(lambda url: week_from in url, timeout=30_000)
        await page.wait_for_selector("#range", timeout=30_000)
        await _tables_match_the_api(
            world,
            page,
            {"from": (today - dt.timedelta(days=6)).isoformat(), "to": today.isoformat()},
        )
        await page.screenshot(path=str(world.artifacts / "dashboard-last-7-days.png"))
        # A custom range: the first two simulated days, typed into the date inputs.
        q = {"from": world.days[0].isoformat(), "to": world.days[1].isoformat()}
        for name in ("from", "to"):
            await page.eval_on_selector(f"#{name}", "(el, v) => { el.value = v; }", q[name])
        await page.click("#range button[type='submit']")
        await page.wait_for_url(lambda url: f"to={q['to']}" in url, timeout=30_000)
        await page.wait_for_selector("#range", timeout=30_000)
        await _tables_match_the_api(world, page, q)
        await page.screenshot(path=str(world.artifacts / "dashboard-two-days.png"))
        # The CSV of what is on screen.
        async with page.expect_download(timeout=30_000) as download_info:
            await page.click("#csv")
        download = await download_info.value
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        assert saved.name == f"usage-{q['from']}-{q['to']}.csv"
        assert saved.read_bytes() == world.get("/v1/dashboard.csv", q)[1]
        blocked = [text for text in console if "Content Security Policy" in text]
        assert not blocked, blocked
        await context.close()
