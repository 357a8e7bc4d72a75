"""K-anonymity suppression of the analysts' usage cells, with totals that cannot undo it.

A cell ``(day, app, sub_app)`` is published only if at least ``K`` distinct students contributed
(``usage.app_daily_public``). Suppressing a cell is not enough once per-app totals are published: with one
suppressed cell, ``total - sum(published cells)`` *is* the suppressed cell; with several whose combined size is
below ``K`` the difference is a small group. Two ways to publish a per-app total safely, both here:

- ``"published"`` (the default, and what every analyst path does): a total covers only published cells. The
  difference between the total and its published cells is then empty. An analyst who sums the public view gets
  exactly this; no analyst path holds a total over all cells.
- ``"complementary"``: a total over all cells, with complementary suppression — when the primary-suppressed
  cells are one, or fewer than ``K`` students together, further published cells (smallest first) are suppressed
  until the residue has at least two cells and ``K`` students (counted as a sum, which overstates distinct
  students when they overlap; so this mode is offered for additive-only reporting). If that is impossible, the
  total is not published.

:func:`disclosure` is the attack itself (subtract published cells from a published total) and names what a
publication would reveal; tests run it on every plan. All functions are pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NamedTuple

Mode = Literal["published", "complementary"]


class Cell(NamedTuple):
    """One usage cell of one day and app."""

    sub_app: str
    students: int
    active_seconds: float


class AppTotal(NamedTuple):
    """A per-app total and exactly which cells it covers."""

    active_seconds: float
    covers: frozenset[str]


class Publication(NamedTuple):
    """What may be published for one (day, app): the cells, and the total (``None`` = withheld)."""

    cells: tuple[Cell, ...]
    total: AppTotal | None
    suppressed: frozenset[str]


def primary_suppressed(cells: Iterable[Cell], k: int) -> frozenset[str]:
    """Cells with fewer than ``k`` students."""
    return frozenset(c.sub_app for c in cells if c.students < k)


def _safe_residue(residue: list[Cell], k: int) -> bool:
    return not residue or (len(residue) >= 2 and sum(c.students for c in residue) >= k)


def plan(cells: Iterable[Cell], k: int, mode: Mode = "published") -> Publication:
    """The cells and total of one (day, app) that may be published under ``k``-anonymity."""
    if k < 1:
        raise ValueError("k must be >= 1")
    cells = list(cells)
    suppressed = set(primary_suppressed(cells, k))
    if mode == "complementary" and suppressed:
        residue = [c for c in cells if c.sub_app in suppressed]
        candidates = sorted(
            (c for c in cells if c.sub_app not in suppressed), key=lambda c: (c.students, c.sub_app)
        )
        while not _safe_residue(residue, k) and candidates:
            extra = candidates.pop(0)
            suppressed.add(extra.sub_app)
            residue.append(extra)
        if not _safe_residue(residue, k):
            published = tuple(c for c in cells if c.sub_app not in suppressed)
            return Publication(published, None, frozenset(suppressed))
    published = tuple(c for c in cells if c.sub_app not in suppressed)
    covered = cells if mode == "complementary" else list(published)
    total: AppTotal | None = AppTotal(
        sum(c.active_seconds for c in covered), frozenset(c.sub_app for c in covered)
    )
    if not covered or (mode == "complementary" and sum(c.students for c in cells) < k):
        total = None  # nothing to total, or the whole app is a small group
    return Publication(published, total, frozenset(suppressed))


def disclosure(cells: Iterable[Cell], publication: Publication, k: int) -> list[str]:
    """What subtracting published cells from the published total reveals; empty when nothing.

    Also reports any published cell below ``k`` (the primary rule broken).
    """
    by_name = {c.sub_app: c for c in cells}
    problems = [
        f"cell {c.sub_app!r} published with {c.students} < {k} students"
        for c in publication.cells
        if c.students < k
    ]
    total = publication.total
    if total is None:
        return problems
    published = {c.sub_app for c in publication.cells}
    residue = [by_name[name] for name in total.covers - published]
    if len(residue) == 1:
        problems.append(f"total minus published cells recovers cell {residue[0].sub_app!r}")
    elif residue and sum(c.students for c in residue) < k:
        problems.append(f"total minus published cells reveals a group of < {k} students")
    return problems
