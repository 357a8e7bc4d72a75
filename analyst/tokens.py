"""Analyst bearer tokens and dashboard sessions; only SHA-256 hashes of tokens are stored.

Token file (``ANALYST_TOKENS_PATH``, JSON, mode 0600)::

    {"version": 1, "analysts": [{"analyst_id": "a-ops", "token_sha256": "<64 hex>"}]}

A token is 256 random bits, shown once when issued (``csync analyst-token add``), never written anywhere; an
analyst token is its own kind (a teacher token is no analyst token and the reverse — separate files). Lookup
hashes the presented token and compares it with every entry in constant time, as teacher tokens do; the file
is re-read on every lookup, so ``csync analyst-token revoke`` takes effect on the next request.

Dashboard sessions: the browser signs in by *posting* a token to ``/login`` (never in a URL, which would end
up in history, ``Referer`` headers and logs) and gets a random session id in an ``HttpOnly``,
``SameSite=Strict`` cookie. The server keeps only the id's hash, the analyst, the hash of the token used to
sign in and an expiry, and checks on every request that this token is still in the file, so revoking it ends
its sessions for good (a new token for the same analyst does not revive them).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from csync.settings import Settings
from csync.tokens import (
    analyst_tokens_path,
    is_sha256_hex,
    match_digest,
    new_token,
    token_digest,
    write_private_json,
)
from schemas.roster import is_valid_id


class TokenFileError(ValueError):
    """The analyst token file is malformed; the message never contains a token or a hash."""


def hash_token(token: str) -> bytes:
    """SHA-256 of a token (or of a session id or sign-in code)."""
    return token_digest(token)


def tokens_path(settings: Settings) -> Path:
    """Where the analyst token file of these settings lives (the token store's naming scheme)."""
    return analyst_tokens_path(settings)


def parse_tokens(raw: bytes) -> list[tuple[str, str]]:
    """``(token_sha256 hex, analyst_id)`` pairs; raises :class:`TokenFileError`."""
    try:
        doc: Any = orjson.loads(raw)
        analysts = doc["analysts"]
        if doc.get("version") != 1 or not isinstance(analysts, list):
            raise TokenFileError("analyst token file must be {'version': 1, 'analysts': [...]}")
        out = []
        for n, entry in enumerate(analysts):
            digest, who = str(entry["token_sha256"]), entry["analyst_id"]
            if not is_sha256_hex(digest):
                raise TokenFileError(f"analyst #{n}: token_sha256 must be 64 lower-case hex digits")
            if not isinstance(who, str) or not is_valid_id(who):
                raise TokenFileError(
                    f"analyst #{n}: analyst_id must be 1-64 chars of [A-Za-z0-9_.-]"
                )
            out.append((digest, who))
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise TokenFileError(f"malformed analyst token file: {type(exc).__name__}") from exc


@dataclass(slots=True)
class AnalystBook:
    """The analysts of a token file, reloaded when the file changes."""

    path: Path
    _entries: list[tuple[bytes, str]] = field(default_factory=list)
    _raw: bytes | None = None

    def authenticate(self, token: str | None) -> str | None:
        """The analyst id of ``token`` or ``None``; every entry is compared, in constant time each."""
        self._refresh()
        if not token:
            return None
        return match_digest(self._entries, hash_token(token))

    def still_valid(self, token_digest: bytes) -> bool:
        """Whether the token with this SHA-256 is still in the file (a session ends with its token)."""
        self._refresh()
        return match_digest(self._entries, token_digest) is not None

    def _refresh(self) -> None:
        # The file is small: compare its bytes, not its stat (an atomic replace can reuse the inode,
        # mtime and size, and a missed revocation is not acceptable).
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._entries, self._raw = [], None
            return
        if raw != self._raw:
            self._entries = [(bytes.fromhex(h), who) for h, who in parse_tokens(raw)]
            self._raw = raw


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    raw = path.read_bytes()
    parse_tokens(raw)
    analysts: list[dict[str, Any]] = orjson.loads(raw)["analysts"]
    return analysts


def _write(path: Path, analysts: list[dict[str, Any]]) -> None:
    write_private_json(path, {"version": 1, "analysts": analysts})


def issue_token(path: Path, analyst_id: str) -> str:
    """Add a token for ``analyst_id`` and return it — the only copy."""
    if not is_valid_id(analyst_id):
        raise TokenFileError("analyst_id must be 1-64 chars of [A-Za-z0-9_.-]")
    token = new_token()
    _write(
        path, [*_read(path), {"analyst_id": analyst_id, "token_sha256": hash_token(token).hex()}]
    )
    return token


def revoke_analyst(path: Path, analyst_id: str) -> int:
    """Remove every token of ``analyst_id``; how many were removed."""
    analysts = _read(path)
    kept = [a for a in analysts if a["analyst_id"] != analyst_id]
    _write(path, kept)
    return len(analysts) - len(kept)


def parse_tokens_file(path: Path) -> list[tuple[str, str]]:
    """``(token_sha256 hex, analyst_id)`` of a token file (none when it does not exist)."""
    return parse_tokens(path.read_bytes()) if path.exists() else []


def list_analysts(path: Path) -> list[str]:
    """Analyst ids holding at least one token (no hashes)."""
    return sorted({a["analyst_id"] for a in _read(path)})


@dataclass(slots=True)
class Sessions:
    """Dashboard sessions in memory: hash of the session id → (analyst, hash of the token signed in
    with, expiry on the monotonic clock)."""

    ttl_s: float
    _live: dict[bytes, tuple[str, bytes, float]] = field(default_factory=dict)

    def start(self, analyst_id: str, token_digest: bytes, now: float | None = None) -> str:
        """A new session id for ``analyst_id`` (goes into the cookie only)."""
        now = time.monotonic() if now is None else now
        self._live = {h: v for h, v in self._live.items() if v[2] > now}
        sid = secrets.token_urlsafe(32)
        self._live[hash_token(sid)] = (analyst_id, token_digest, now + self.ttl_s)
        return sid

    def lookup(self, sid: str | None, now: float | None = None) -> tuple[str, bytes] | None:
        """``(analyst, token hash)`` of a live session id, or ``None``."""
        if not sid:
            return None
        now = time.monotonic() if now is None else now
        found = self._live.get(hash_token(sid))
        return (found[0], found[1]) if found and found[2] > now else None

    def end(self, sid: str | None) -> None:
        """Forget a session (sign out)."""
        if sid:
            self._live.pop(hash_token(sid), None)
