"""The privacy commands that need no service: tokens, audit tail/verify, the analyst-query audit hook."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from csync.cli import main
from csync.settings import Settings
from privacy.audit import AuditLog, record_usage_query


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path), "TEACHER_TOKENS_PATH": "", "AUDIT_LOG_PATH": ""}


def test_token_commands_print_the_token_once_and_audit_without_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()
    added = runner.invoke(main, ["teacher-token", "add", "--teacher", "t1", "--district", "d1",
                                 "--class", "c-1"], env=env)  # fmt: skip
    assert added.exit_code == 0, added.output
    token = added.output.strip()
    assert len(token) >= 40
    assert token not in (tmp_path / "teacher_tokens.json").read_text()
    revoked = runner.invoke(main, ["teacher-token", "revoke", "--teacher", "t1"], env=env)
    assert revoked.output.strip() == "revoked 1 token(s)"
    tail = runner.invoke(main, ["audit", "tail", "--json"], env=env)
    actions = [orjson.loads(line)["action"] for line in tail.output.splitlines()]
    assert actions == ["teacher-token.add", "teacher-token.revoke"]
    assert token not in (tmp_path / "audit" / "audit.log").read_text()
    assert runner.invoke(main, ["audit", "verify"], env=env).output.startswith("ok: 2 entries")


def test_audit_verify_fails_on_a_deleted_line(env: dict[str, str], tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.log")
    for i in range(3):
        log.append("ops", "purge", f"district:d{i}")
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(lines[0] + lines[2])
    result = CliRunner().invoke(main, ["audit", "verify"], env=env)
    assert result.exit_code == 1
    assert "chain broken" in result.output


def test_usage_query_hook_audits_the_range_and_row_count(tmp_path: Path) -> None:
    settings = Settings.from_env(env={}, data_dir=str(tmp_path))
    record_usage_query(
        settings, dt.date(2026, 1, 1), dt.date(2026, 1, 7), "math", 12, who="analyst:jo"
    )
    [entry] = AuditLog.from_settings(settings).tail(5)
    assert entry["who"] == "analyst:jo"
    assert entry["action"] == "usage.query"
    assert entry["target"] == "usage.app_daily_public 2026-01-01..2026-01-07 app=math"
    assert entry["detail"] == {"rows": 12}


def test_offboarding_revokes_only_the_districts_collector_tokens(tmp_path: Path) -> None:
    from privacy.offboard import revoke_collector_tokens
    from producers.collector import add_token, load_tokens

    path = tmp_path / "collector_tokens.json"
    add_token(path, "tok-a", "d1")
    add_token(path, "tok-b", "d1")
    add_token(path, "tok-c", "d10")
    assert revoke_collector_tokens(path, "d1") == 2
    assert list(load_tokens(path).values()) == ["d10"]
    assert path.stat().st_mode & 0o077 == 0
    assert revoke_collector_tokens(tmp_path / "none.json", "d1") == 0
