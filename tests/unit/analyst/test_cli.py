"""The analysts' commands on ``csync``: ``usage`` keeps working as before and gains ``export``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from csync.cli import main


def test_usage_is_still_the_query_command_and_export_is_its_subcommand() -> None:
    runner = CliRunner()
    plain = runner.invoke(main, ["usage", "--help"])
    assert plain.exit_code == 0 and "--from" in plain.output and "usage export" in plain.output
    export = runner.invoke(main, ["usage", "export", "--help"])
    assert export.exit_code == 0 and "--period" in export.output and "--as-of" in export.output
    missing = runner.invoke(main, ["usage", "--to", "2026-12-01"])
    assert missing.exit_code == 2 and "--from" in missing.output


def test_tokens_and_codes_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert (
        runner.invoke(main, ["analyst-token", "sign-in-code", "a-ops"]).exit_code == 1
    )  # no token yet
    added = runner.invoke(main, ["analyst-token", "add", "a-ops"])
    token = added.output.strip()
    assert added.exit_code == 0 and len(token) >= 40
    assert token not in (tmp_path / "analyst_tokens.json").read_text()
    code = runner.invoke(main, ["analyst-token", "sign-in-code", "a-ops"]).output.strip()
    assert len(code) == 14 and code[4] == "-"
    assert runner.invoke(main, ["analyst-token", "list"]).output.split() == ["a-ops"]
    assert "revoked 1" in runner.invoke(main, ["analyst-token", "revoke", "a-ops"]).output
    bad = runner.invoke(main, ["analyst-token", "add", "not ok"])
    assert bad.exit_code == 1 and "analyst_id" in bad.output
