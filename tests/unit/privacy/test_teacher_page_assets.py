"""The teacher page's static files: shipped in the package, no inline script, readable colours (WCAG AA)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

WEB = resources.files("privacy.web")

# (text colour, background) pairs the stylesheet uses for words a teacher must read.
PAIRS = [
    ("--ink", "--paper"),
    ("--ink", "--card"),
    ("--muted", "--card"),
    ("--muted", "--paper"),
    ("--offline", "--card"),
    ("--online", "--online-bg"),
    ("--inactive", "--inactive-bg"),
    ("--inactive", "--card"),
    ("--accent", "--card"),
]


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_contrast_helper_matches_known_ratios() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_text_colours_meet_wcag_aa_on_their_backgrounds() -> None:
    css = WEB.joinpath("class.css").read_text()
    colours = dict(re.findall(r"(--[a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;", css))
    for text, background in PAIRS:
        ratio = contrast(colours[text], colours[background])
        assert ratio >= 4.5, f"{text} on {background}: {ratio:.2f}:1"


def test_the_page_loads_only_its_own_module_and_has_no_inline_script() -> None:
    html = WEB.joinpath("index.html").read_text()
    assert re.findall(r"<script\b([^>]*)>\s*</script>", html) == [
        ' type="module" src="/static/class.js"'
    ]
    assert html.count("<script") == 1
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from another origin
    js = WEB.joinpath("class.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js
    assert "localStorage" not in js and "sessionStorage" not in js
