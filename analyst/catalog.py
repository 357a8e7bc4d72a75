"""The district's app catalog: which apps and sites it knows, their category, approval and licences.

A CSV file with a header line and these columns (``#`` starts a comment line; blank lines are skipped)::

    app,sub_app,name,category,approved,licenses,annual_cost
    mathapp,,Math App,Math,yes,500,12000
    web,*.khanacademy.org,Khan Academy,Math,yes,,
    web,games.example,Games Example,Games,no,,

- ``app`` is the app exactly as devices report it (``web`` for a browser); required.
- ``sub_app`` is a pattern: empty or ``*`` matches every sub-app of the app; ``*.example.org`` matches
  ``example.org`` and every subdomain of it; anything else matches exactly (case-insensitive).
- ``name`` and ``category`` are shown to analysts; ``approved`` is ``yes``/``no``; ``licenses`` (seats owned)
  and ``annual_cost`` are optional non-negative numbers.

The first matching line wins, so put specific patterns before broad ones. A cell that matches no line is
shown as *uncatalogued* under its own app or site name, so the catalog can be grown from the data.
Errors name the line: ``catalog.csv:7: approved must be yes or no, got 'maybe'``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

SAMPLE_CATALOG = Path(__file__).with_name("sample_catalog.csv")
"""A sample catalog for the simulated district (the demo's, and the README's example)."""
COLUMNS = ("app", "sub_app", "name", "category", "approved", "licenses", "annual_cost")
UNCATALOGUED = "uncatalogued"
_YES = {
    "yes": True,
    "y": True,
    "true": True,
    "1": True,
    "no": False,
    "n": False,
    "false": False,
    "0": False,
}


class CatalogError(ValueError):
    """A catalog line cannot be used; the message starts with ``file:line:``."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One catalog line: what it matches and what the district says about it."""

    app: str
    sub_app: str
    name: str
    category: str
    approved: bool | None
    """``None`` for an uncatalogued cell (no one said)."""
    licenses: int | None = None
    annual_cost: float | None = None
    line: int = 0

    def matches(self, app: str, sub_app: str) -> bool:
        """Whether the cell ``(app, sub_app)`` belongs to this entry."""
        if app != self.app:
            return False
        pattern, sub = self.sub_app.lower(), sub_app.lower()
        if pattern in ("", "*"):
            return True
        if pattern.startswith("*."):
            return sub == pattern[2:] or sub.endswith(pattern[1:])
        return sub == pattern

    @property
    def key(self) -> str:
        """A stable label of the entry, for tables and CSV (its name)."""
        return self.name


@dataclass(frozen=True, slots=True)
class Catalog:
    """The entries of a catalog file, in file order."""

    entries: tuple[Entry, ...] = ()

    def entry_for(self, app: str, sub_app: str) -> Entry:
        """The first entry matching the cell, or an uncatalogued entry named after the app or site."""
        for entry in self.entries:
            if entry.matches(app, sub_app):
                return entry
        label = sub_app if app == "web" else app
        return Entry(app, sub_app, label, UNCATALOGUED, None)

    def categories(self) -> list[str]:
        """Every category of the catalog, sorted."""
        return sorted({e.category for e in self.entries})


def load_catalog(path: Path | str | None) -> Catalog:
    """The catalog at ``path`` (an empty one for ``None`` or ``""``); raises :class:`CatalogError`."""
    if not path:
        return Catalog()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc}") from exc
    return parse_catalog(text, path.name)


def parse_catalog(text: str, source: str = "catalog.csv") -> Catalog:
    """Parse catalog CSV text; every error names ``source:line``."""
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1)
             if ln.strip() and not ln.lstrip().startswith("#")]  # fmt: skip
    if not lines:
        raise CatalogError(f"{source}: empty catalog (a header line is required)")
    header_no, header = lines[0]
    names = [c.strip().lower() for c in next(csv.reader([header]))]
    if tuple(names) != COLUMNS:
        raise CatalogError(f"{source}:{header_no}: the header must be {','.join(COLUMNS)}")
    entries: list[Entry] = []
    for number, line in lines[1:]:
        try:
            entries.append(_entry(next(csv.reader(io.StringIO(line))), number))
        except ValueError as exc:
            raise CatalogError(f"{source}:{number}: {exc}") from None
    return Catalog(tuple(entries))


def _entry(fields: list[str], line: int) -> Entry:
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} columns, got {len(fields)}")
    app, sub_app, name, category, approved, licenses, cost = (f.strip() for f in fields)
    if not app or len(app) > 64:
        raise ValueError("app must be 1-64 characters")
    if len(sub_app) > 128 or ("*" in sub_app and sub_app != "*" and not _wildcard_ok(sub_app)):
        raise ValueError(f"sub_app pattern {sub_app!r}: use '', '*', '*.domain' or an exact name")
    if not name or not category:
        raise ValueError("name and category are required")
    if category.lower() == UNCATALOGUED:
        raise ValueError(
            f"category {UNCATALOGUED!r} is reserved for cells the catalog does not match"
        )
    if approved.lower() not in _YES:
        raise ValueError(f"approved must be yes or no, got {approved!r}")
    seats = _number(licenses, "licenses", int)
    return Entry(
        app, sub_app, name, category, _YES[approved.lower()],
        None if seats is None else int(seats), _number(cost, "annual_cost", float), line,
    )  # fmt: skip


def _wildcard_ok(pattern: str) -> bool:
    return pattern.startswith("*.") and "*" not in pattern[2:] and len(pattern) > 2


def _number(text: str, what: str, kind: type[int] | type[float]) -> float | None:
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        whole = "whole " if kind is int else ""
        raise ValueError(f"{what} must be a {whole}number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{what} must not be negative")
    return value
