"""The analysts' figures: what each one is, and that none depends on a cell below K.

The privacy property is stated as non-interference: every analyst output (the dashboard's data, its HTML,
its CSV, the daily/top/trend answers) for any range and filters is a function of the published cells alone.
Changing, adding or removing cells below K — whatever they hold — changes no byte of any output, so no
combination of outputs (subtracting a top-N from a total, a category from its apps, one range from an
overlapping one) can reveal anything about them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from analyst import reports
from analyst.catalog import parse_catalog
from analyst.dashboard import dashboard_csv, dashboard_data, school_year_start
from analyst.render import page
from analyst.reports import Query

K = 10
D0 = dt.date(2026, 11, 2)  # a Monday
CATALOG = parse_catalog(
    "app,sub_app,name,category,approved,licenses,annual_cost\n"
    "math,,Math,Math,yes,40,4000\n"
    "web,*.khan.org,Khan,Math,yes,,\n"
    "web,games.example,Games,Games,no,,\n"
    "reader,,Reader,ELA,yes,100,\n"
)


def row(day: dt.date, app: str, sub: str, seconds: float, students: int) -> dict[str, Any]:
    return {
        "day": day.isoformat(),
        "app": app,
        "sub_app": sub,
        "active_seconds": seconds,
        "students": students,
    }


def test_published_reapplies_k_to_what_the_store_returns() -> None:
    cells = reports.published([row(D0, "math", "a", 60.0, 9), row(D0, "math", "b", 60.0, 10)], K)
    assert [c.sub_app for c in cells] == ["b"]


def test_summary_sums_student_days_and_takes_the_daily_largest_cell() -> None:
    cells = reports.published(
        [row(D0, "math", "a", 100.0, 12), row(D0, "math", "b", 50.0, 20),
         row(D0 + dt.timedelta(1), "math", "a", 10.0, 15)], K,
    )  # fmt: skip
    s = reports.summarise(cells)
    assert s == reports.Summary(
        160.0, 47, 20, 15, 2
    )  # peak = day 1's largest cell; median_low of [20, 15]


def test_top_splits_apps_from_sites_and_totals_cover_every_published_cell() -> None:
    cells = reports.published(
        [row(D0, "math", "a", 300.0, 12), row(D0, "reader", "", 200.0, 11),
         row(D0, "web", "es.khan.org", 500.0, 14), row(D0, "web", "games.example", 50.0, 10)], K,
    )  # fmt: skip
    apps = reports.top(cells, "apps", 1, CATALOG)
    assert [r["name"] for r in apps["rows"]] == ["math"] and apps["groups"] == 2
    assert apps["total"]["active_seconds"] == 500.0  # both apps, though only the top one is listed
    sites = reports.top(cells, "sites", 10, CATALOG)
    assert [(r["name"], r["category"]) for r in sites["rows"]] == [
        ("es.khan.org", "Math"),
        ("games.example", "Games"),
    ]


def test_trend_buckets_by_day_iso_week_and_month() -> None:
    days = [D0 - dt.timedelta(3), D0, D0 + dt.timedelta(6), D0 + dt.timedelta(7)]
    cells = reports.published([row(d, "math", "a", 60.0, 10) for d in days], K)
    assert [r["bucket"] for r in reports.trend(cells, "week")] == [
        "2026-10-26",
        "2026-11-02",
        "2026-11-09",
    ]
    assert [r["days"] for r in reports.trend(cells, "week")] == [1, 2, 1]
    assert [r["bucket"] for r in reports.trend(cells, "month")] == ["2026-10-01", "2026-11-01"]
    assert len(reports.trend(cells, "day")) == 4


def test_catalog_reports_categories_licences_unapproved_and_unused() -> None:
    day2 = D0 + dt.timedelta(1)
    cells = reports.published(
        [row(D0, "math", "a", 300.0, 12), row(D0, "math", "b", 100.0, 30), row(day2, "math", "a", 60.0, 10),
         row(D0, "web", "games.example", 50.0, 11), row(D0, "web", "new.example", 40.0, 13),
         row(day2, "web", "new.example", 40.0, 13)], K,
    )  # fmt: skip
    cats = {r["category"]: r for r in reports.categories(cells, CATALOG)}
    assert set(cats) == {"Math", "Games", "uncatalogued"}
    assert cats["Math"]["active_seconds"] == 460.0 and cats["Math"]["student_days"] == 52
    [math, reader] = reports.licenses(cells, CATALOG, active_days=3)
    assert (math["name"], math["peak_daily_students"], math["median_daily_students"]) == (
        "Math",
        30,
        10,
    )
    assert (math["peak_utilisation"], math["cost_per_peak_student"]) == (0.75, round(4000 / 30, 2))
    assert (
        reader["peak_daily_students"],
        reader["median_utilisation"],
        reader["cost_per_peak_student"],
    ) == (0, 0.0, None)
    flagged = {r["name"]: r["status"] for r in reports.unapproved(cells, CATALOG)}
    assert flagged == {"Games": "unapproved", "new.example": "not in catalog"}
    assert [r["name"] for r in reports.unused(cells, CATALOG)] == ["Khan", "Reader"]


def test_a_range_is_checked() -> None:
    for bad in ((D0, D0 - dt.timedelta(1)), (D0, D0 + dt.timedelta(401))):
        try:
            Query(*bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
    assert school_year_start(dt.date(2026, 12, 4)) == dt.date(2026, 8, 1)
    assert school_year_start(dt.date(2027, 3, 1)) == dt.date(2026, 8, 1)


# --- non-interference: outputs are a function of the published cells alone

APPS = [("math", "a"), ("math", "b"), ("reader", ""), ("web", "es.khan.org"), ("web", "games.example"),
        ("web", "new.example"), ("quiz", "q1")]  # fmt: skip
cell_st = st.tuples(
    st.integers(0, 20), st.sampled_from(APPS), st.integers(1, 36000), st.integers(1, 40)
)


def _rows(raw: list[tuple[int, tuple[str, str], int, int]]) -> list[dict[str, Any]]:
    seen: dict[tuple[int, str, str], dict[str, Any]] = {}
    for day, (app, sub), ms, n in raw:
        seen[(day, app, sub)] = row(D0 + dt.timedelta(day), app, sub, ms / 1000, n)
    return list(seen.values())


def outputs(rows: list[dict[str, Any]], query: Query) -> list[str]:
    """Every analyst output for ``query``: dashboard JSON-able data, its page and CSV, daily/top/trend."""
    cells = reports.select(reports.published(rows, K), query, CATALOG)
    data = dashboard_data(cells, query, CATALOG, K)
    return [
        repr(data), page(data), dashboard_csv(data), repr(sorted(cells)),
        repr(reports.top(cells, "apps", 3, CATALOG)), repr(reports.top(cells, "sites", 2, CATALOG)),
        *(repr(reports.trend(cells, b)) for b in reports.BUCKETS),
    ]  # fmt: skip


query_st = st.builds(
    lambda a, b, app, cat: Query(D0 + dt.timedelta(min(a, b)), D0 + dt.timedelta(max(a, b)), app, cat),
    st.integers(0, 20), st.integers(0, 20), st.sampled_from([None, "math", "web"]),
    st.sampled_from([None, "Math", "Games", "uncatalogued"]),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(cell_st, max_size=40),
    small=st.lists(cell_st.map(lambda c: (c[0], c[1], c[2], c[3] % K)), max_size=15),
    queries=st.lists(query_st, min_size=1, max_size=4),
)
def test_no_output_depends_on_a_cell_below_k(
    raw: list[tuple[int, tuple[str, str], int, int]],
    small: list[tuple[int, tuple[str, str], int, int]],
    queries: list[Query],
) -> None:
    rows = _rows(raw)
    keys = {(r["day"], r["app"], r["sub_app"]) for r in rows}
    # Cells below K (0..K-1 students) in places no published cell holds, and published cells made small.
    extra = [r for r in _rows(small) if (r["day"], r["app"], r["sub_app"]) not in keys]
    shrunk = [dict(r, students=r["students"] % K) if r["students"] >= K and i % 3 == 0 else r
              for i, r in enumerate(rows)]  # fmt: skip
    published_only = [r for r in rows if r["students"] >= K]
    for query in queries:
        base = outputs(published_only, query)
        assert outputs(rows + extra, query) == base
        # Shrinking a published cell below K is the same as removing it (it leaves every output).
        assert outputs(shrunk, query) == outputs([r for r in shrunk if r["students"] >= K], query)
        figures = dashboard_data(
            reports.select(reports.published(rows, K), query, CATALOG), query, CATALOG, K
        )
        for table in ("categories", "unapproved", "trend"):
            for r in figures[table]:
                assert r["peak_daily_students"] >= K and r["student_days"] >= K
