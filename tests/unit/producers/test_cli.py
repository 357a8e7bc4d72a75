"""The simulator's command line: durations as people write them, students per district."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from producers.cli import Duration, simulate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60", 60.0), ("60s", 60.0), ("2m", 120.0), ("1.5h", 5400.0), (" 90S ", 90.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["", "s", "abc", "10x", "-5s", "0"])
def test_bad_durations_are_rejected_clearly(text: str) -> None:
    with pytest.raises(click.BadParameter, match="duration|positive"):
        Duration().convert(text, None, None)


def test_cli_rejects_a_bad_duration_before_touching_kafka() -> None:
    result = CliRunner().invoke(simulate, ["--duration", "soon"])
    assert result.exit_code == 2
    assert "not a duration" in result.output
