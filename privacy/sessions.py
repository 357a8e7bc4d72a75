"""Sessions of the teacher page, and one-time sign-in codes.

A teacher signs in once with their token (or a one-time code); the page then holds only a random session id
in an HttpOnly, SameSite=Strict cookie — the token never sits in a URL, in local storage or in the browser
after the sign-in request. The server keeps, per session, the SHA-256 of the session id (never the id) and
the SHA-256 of the teacher's token (never the token), so every request re-checks the token against the
token file: revoking a teacher's token ends their sessions at once.

Sessions are written to a file (mode 0600, atomic replace) so an API restart does not sign teachers out; a
leaked file grants nothing (hashes of 256-bit random values only). Sessions expire ``TEACHER_SESSION_TTL_S``
after sign-in, whatever happens.

A sign-in code stands for a token for a short while (``TEACHER_SIGN_IN_CODE_TTL_S``) and once: it is what a
launcher (``make demo``) can print beside the page's URL without putting a token in a URL. Codes live only
in memory: a restart invalidates them, which is the safe direction.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from csync.settings import Settings

COOKIE = "csync_session"


def sessions_path(settings: Settings) -> Path:
    """Where the sessions of these settings are kept."""
    if settings.teacher_sessions_path:
        return Path(settings.teacher_sessions_path)
    return Path(settings.data_dir) / "teacher_sessions.json"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class SessionStore:
    """Session id hash → (token digest, expiry ms); sign-in code hash → (token digest, expiry ms)."""

    path: Path | None
    ttl_s: int
    code_ttl_s: int
    _sessions: dict[str, tuple[str, int]] = field(default_factory=dict)
    _codes: dict[str, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionStore:
        store = cls(
            sessions_path(settings),
            settings.teacher_session_ttl_s,
            settings.teacher_sign_in_code_ttl_s,
        )
        store.load()
        return store

    def create(self, token_digest: bytes, now_ms: int) -> str:
        """A new session for the token with this SHA-256 digest; returns the id (the cookie's value)."""
        session_id = secrets.token_urlsafe(32)
        self._sessions[_digest(session_id)] = (token_digest.hex(), now_ms + self.ttl_s * 1000)
        self._save(now_ms)
        return session_id

    def token_digest(self, session_id: str | None, now_ms: int) -> bytes | None:
        """The token digest of a live session, or ``None`` (unknown, expired or no cookie)."""
        if not session_id:
            return None
        found = self._sessions.get(_digest(session_id))
        if found is None or found[1] <= now_ms:
            return None
        return bytes.fromhex(found[0])

    def end(self, session_id: str | None, now_ms: int) -> None:
        """Forget a session (sign-out, or its token was revoked)."""
        if session_id and self._sessions.pop(_digest(session_id), None) is not None:
            self._save(now_ms)

    def issue_code(self, token_digest: bytes, now_ms: int) -> str:
        """A one-time sign-in code for this token (72 random bits, single use, short-lived)."""
        code = secrets.token_urlsafe(9)
        self._codes = {k: v for k, v in self._codes.items() if v[1] > now_ms}
        self._codes[_digest(code)] = (token_digest.hex(), now_ms + self.code_ttl_s * 1000)
        return code

    def redeem_code(self, code: str, now_ms: int) -> bytes | None:
        """The token digest a code stands for, once; ``None`` for an unknown, used or expired code."""
        presented = _digest(code)
        match = next((k for k in self._codes if hmac.compare_digest(k, presented)), None)
        if match is None:
            return None
        digest, expires = self._codes.pop(match)
        return bytes.fromhex(digest) if expires > now_ms else None

    def load(self) -> None:
        """Read the sessions file (missing or unreadable = no sessions: teachers sign in again)."""
        if self.path is None:
            return
        try:
            doc = orjson.loads(self.path.read_bytes())
            self._sessions = {str(k): (str(t), int(e)) for k, (t, e) in doc["sessions"].items()}
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self._sessions = {}

    def _save(self, now_ms: int) -> None:
        self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now_ms}
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps({"version": 1, "sessions": self._sessions}))
        tmp.replace(self.path)
