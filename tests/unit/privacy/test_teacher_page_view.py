"""The page's class view (pure): three states derived server-side, order, counts, fields sent."""

from __future__ import annotations

from typing import Any

from privacy.teacher_web import PAGE_ROW_FIELDS, page_view

DAY_START = 1_000_000


def test_states_order_and_counts_and_nothing_but_the_row_fields() -> None:
    members = ["s1", "s2", "s3", "s4", "s5", "s6"]
    hashes: list[list[Any]] = [
        [b"zoe", b"1", b"fractions", b"1000500"],  # online
        [b"Ada", b"0", b"", b"1000001"],  # offline, seen today
        [b"bob", b"0", b"", b"0"],  # rostered, no event ever
        [b"Cy", b"0", b"", b"999999"],  # last seen before local midnight
        [None, None, None, None],  # no hash at all
        [b"amy", b"1", b"reading", b"5"],  # online wins over an old ts
    ]
    view = page_view("c-1", members, hashes, b"k" * 32, DAY_START)
    rows = view["students"]
    assert [(r["name"], r["state"], r["sub_app"]) for r in rows] == [
        ("amy", "online", "reading"),
        ("zoe", "online", "fractions"),
        ("", "inactive", ""),
        ("Ada", "offline", ""),
        ("bob", "inactive", ""),
        ("Cy", "inactive", ""),
    ]
    assert (view["online"], view["total"], view["monitoring"]) == (2, 6, "on")
    assert all(tuple(r) == PAGE_ROW_FIELDS for r in rows)
    flat = str(view)
    for never in ("1000500", "999999", "s1", "s2"):  # no ts, no student id
        assert never not in flat


def test_sub_app_is_shown_only_while_online() -> None:
    view = page_view("c-1", ["s1"], [[b"A", b"0", b"stale-app", b"1000500"]], b"k" * 32, DAY_START)
    assert view["students"][0]["sub_app"] == ""
