"""The app catalog: format, line-numbered errors, matching rules, uncatalogued cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyst.catalog import UNCATALOGUED, CatalogError, load_catalog, parse_catalog

GOOD = """# district catalog
app,sub_app,name,category,approved,licenses,annual_cost
mathapp,,Math App,Math,yes,500,12000
web,*.khanacademy.org,Khan Academy,Math,yes,,
web,games.example,Games Example,Games,no,,

web,*,Other web,Web,no,,
"""


def test_a_valid_catalog_parses_every_field() -> None:
    catalog = parse_catalog(GOOD)
    assert [e.name for e in catalog.entries] == [
        "Math App",
        "Khan Academy",
        "Games Example",
        "Other web",
    ]
    math = catalog.entries[0]
    assert (math.approved, math.licenses, math.annual_cost, math.line) == (True, 500, 12000.0, 3)
    assert catalog.entries[2].approved is False and catalog.entries[2].licenses is None
    assert catalog.categories() == ["Games", "Math", "Web"]


@pytest.mark.parametrize(
    ("app", "sub_app", "name"),
    [
        ("mathapp", "fractions", "Math App"),  # empty pattern: every sub-app
        ("web", "khanacademy.org", "Khan Academy"),  # *.domain matches the domain itself
        ("web", "es.KhanAcademy.org", "Khan Academy"),  # ... and subdomains, case-insensitively
        ("web", "notkhanacademy.org", "Other web"),  # not a subdomain: the next matching line
        ("web", "games.example", "Games Example"),
        ("web", "x.games.example", "Other web"),  # an exact pattern is exact
    ],
)
def test_the_first_matching_line_wins(app: str, sub_app: str, name: str) -> None:
    assert parse_catalog(GOOD).entry_for(app, sub_app).name == name


def test_a_cell_matching_nothing_is_uncatalogued_under_its_app_or_site() -> None:
    catalog = parse_catalog("app,sub_app,name,category,approved,licenses,annual_cost\n")
    site = catalog.entry_for("web", "new.example")
    app = catalog.entry_for("reader", "chapter-1")
    assert (site.name, site.category, site.approved) == ("new.example", UNCATALOGUED, None)
    assert (app.name, app.category) == ("reader", UNCATALOGUED)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mathapp,,Math,Math,maybe,,", "catalog.csv:3: approved must be yes or no, got 'maybe'"),
        (
            "mathapp,,Math,Math,yes,many,",
            "catalog.csv:3: licenses must be a whole number, got 'many'",
        ),
        ("mathapp,,Math,Math,yes,-1,", "catalog.csv:3: licenses must not be negative"),
        (
            "mathapp,,Math,Math,yes,1,cheap",
            "catalog.csv:3: annual_cost must be a number, got 'cheap'",
        ),
        ("mathapp,,Math,Math,yes", "catalog.csv:3: expected 7 columns, got 5"),
        (",,Math,Math,yes,,", "catalog.csv:3: app must be 1-64 characters"),
        ("web,a*.org,A,Web,yes,,", "catalog.csv:3: sub_app pattern 'a*.org'"),
        ("web,a.org,,Web,yes,,", "catalog.csv:3: name and category are required"),
        ("web,a.org,A,uncatalogued,yes,,", "catalog.csv:3: category 'uncatalogued' is reserved"),
    ],
)
def test_errors_name_the_file_and_line(line: str, message: str) -> None:
    text = f"app,sub_app,name,category,approved,licenses,annual_cost\nmathapp,x,Ok,Math,yes,,\n{line}\n"
    with pytest.raises(CatalogError) as err:
        parse_catalog(text)
    assert str(err.value).startswith(message)


def test_a_wrong_header_or_an_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"^catalog.csv:2: the header must be app,sub_app"):
        parse_catalog("# comment\napp,name\n")
    empty = tmp_path / "mine.csv"
    empty.write_text("# nothing\n")
    with pytest.raises(CatalogError, match=r"^mine.csv: empty catalog"):
        load_catalog(empty)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.csv")
    assert load_catalog("").entries == ()
