"""Sessions of the teacher page: hashes only on disk, expiry, sign-out, restart, one-time codes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from privacy.sessions import SessionStore

TOKEN_DIGEST = hashlib.sha256(b"a-teacher-token").digest()


def store(path: Path | None) -> SessionStore:
    return SessionStore(path, ttl_s=3600, code_ttl_s=600)


def test_a_session_stands_for_its_token_until_it_expires_or_ends(tmp_path: Path) -> None:
    sessions = store(tmp_path / "s.json")
    sid = sessions.create(TOKEN_DIGEST, now_ms=1_000)
    assert sessions.token_digest(sid, 1_000) == TOKEN_DIGEST
    assert sessions.token_digest(sid, 1_000 + 3600 * 1000 - 1) == TOKEN_DIGEST
    assert sessions.token_digest(sid, 1_000 + 3600 * 1000) is None
    assert sessions.token_digest("forged", 1_000) is None
    assert sessions.token_digest(None, 1_000) is None
    sessions.end(sid, 2_000)
    assert sessions.token_digest(sid, 2_000) is None


def test_the_file_holds_hashes_only_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    sid = store(path).create(TOKEN_DIGEST, now_ms=1_000)
    text = path.read_text()
    assert sid not in text and "a-teacher-token" not in text
    assert path.stat().st_mode & 0o777 == 0o600
    again = store(path)
    again.load()
    assert again.token_digest(sid, 2_000) == TOKEN_DIGEST
    path.write_text("not json")
    broken = store(path)
    broken.load()  # an unreadable file signs everyone out instead of failing
    assert broken.token_digest(sid, 2_000) is None


def test_a_sign_in_code_works_once_and_only_while_fresh() -> None:
    sessions = store(None)
    code = sessions.issue_code(TOKEN_DIGEST, now_ms=0)
    assert len(code) == 12
    assert sessions.redeem_code(code, 1_000) == TOKEN_DIGEST
    assert sessions.redeem_code(code, 1_000) is None  # single use
    late = sessions.issue_code(TOKEN_DIGEST, now_ms=0)
    assert sessions.redeem_code(late, 600 * 1000) is None  # expired
    assert sessions.redeem_code("guess", 0) is None
