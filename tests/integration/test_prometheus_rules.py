"""The alert rules and scrape config pass promtool, their unit tests pass, and those tests can fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from csync.settings import PROJECT_ROOT
from ops.promtool import run_promtool

PROM = PROJECT_ROOT / "deploy" / "prometheus"
pytestmark = pytest.mark.prometheus


def test_rules_and_config_are_valid() -> None:
    rules = run_promtool("check", "rules", str(PROM / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 9 rules found" in rules.stdout
    config = run_promtool("check", "config", str(PROM / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_rule_unit_tests_pass() -> None:
    tests = sorted((PROM / "tests").glob("*.test.yml"))
    assert tests
    result = run_promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """A time-lag threshold of 600 s instead of 60 s must make the promtool tests fail."""
    (tmp_path / "tests").mkdir()
    alerts = (PROM / "alerts.yml").read_text()
    assert "max by (group) (csync_lag_seconds) > 60" in alerts
    (tmp_path / "alerts.yml").write_text(
        alerts.replace("(csync_lag_seconds) > 60", "(csync_lag_seconds) > 600")
    )
    shutil.copy(PROM / "tests" / "alerts.test.yml", tmp_path / "tests" / "alerts.test.yml")
    result = run_promtool("test", "rules", str(tmp_path / "tests" / "alerts.test.yml"))
    assert result.returncode != 0
    assert "CsyncConsumerTimeLagHigh" in result.stdout + result.stderr
