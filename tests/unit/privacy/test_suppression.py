"""Complementary suppression: no published total lets an analyst recover a cell below K."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.suppression import AppTotal, Cell, Publication, disclosure, plan

K = 10
CELLS = [Cell("fractions", 12, 600.0), Cell("geometry", 3, 90.0), Cell("algebra", 15, 800.0)]


def test_published_mode_total_covers_only_published_cells() -> None:
    pub = plan(CELLS, K)
    assert [c.sub_app for c in pub.cells] == ["fractions", "algebra"]
    assert pub.total == AppTotal(1400.0, frozenset({"fractions", "algebra"}))
    assert pub.suppressed == {"geometry"}
    assert disclosure(CELLS, pub, K) == []


def test_naive_total_over_all_cells_is_caught_recovering_the_suppressed_cell() -> None:
    naive = Publication(
        tuple(c for c in CELLS if c.students >= K),
        AppTotal(1490.0, frozenset(c.sub_app for c in CELLS)),
        frozenset({"geometry"}),
    )
    assert disclosure(CELLS, naive, K) == ["total minus published cells recovers cell 'geometry'"]


def test_complementary_mode_suppresses_a_second_cell() -> None:
    pub = plan(CELLS, K, "complementary")
    assert pub.suppressed == {"geometry", "fractions"}  # the smallest published cell goes too
    assert [c.sub_app for c in pub.cells] == ["algebra"]
    assert pub.total is not None and pub.total.active_seconds == 1490.0
    assert disclosure(CELLS, pub, K) == []


def test_complementary_mode_withholds_the_total_when_no_safe_residue_exists() -> None:
    cells = [Cell("a", 3, 1.0), Cell("b", 2, 1.0)]
    pub = plan(cells, K, "complementary")
    assert pub.cells == () and pub.total is None
    assert plan([Cell("only", 4, 9.0)], K, "complementary").total is None


def test_published_cells_below_k_are_reported() -> None:
    bad = Publication((Cell("x", 2, 1.0),), None, frozenset())
    assert disclosure([Cell("x", 2, 1.0)], bad, K) == ["cell 'x' published with 2 < 10 students"]


cells_strategy = st.lists(
    st.builds(
        Cell,
        sub_app=st.text("abcdefgh", min_size=1, max_size=3),
        students=st.integers(1, 30),
        active_seconds=st.floats(0, 1e6, allow_nan=False),
    ),
    max_size=8,
    unique_by=lambda c: c.sub_app,
)


@settings(max_examples=300, deadline=None)
@given(
    cells=cells_strategy, k=st.integers(1, 20), mode=st.sampled_from(["published", "complementary"])
)
def test_no_plan_ever_discloses_a_small_cell(cells: list[Cell], k: int, mode: str) -> None:
    pub = plan(cells, k, "published" if mode == "published" else "complementary")
    assert disclosure(cells, pub, k) == []
    assert all(c.students >= k for c in pub.cells)
